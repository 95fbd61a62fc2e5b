"""The base of every refusal Loupe explains to a person; the CLI and the web edge translate these."""


class LoupeError(Exception):
    """A request Loupe refuses, with a sentence saying why (never a stack trace for the user)."""
