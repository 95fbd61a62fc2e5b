"""All of Loupe's SQL lives in this package; everything else calls its named functions."""

from db.engine import Database

__all__ = ["Database"]
