"""Named commands and queries on user accounts; passwords are stored as salted scrypt hashes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from db.engine import Database
from db.schema import User
from db.sessions import delete_user_sessions
from errors import LoupeError

ROLES = ("expert", "admin")
NO_LOGIN = "!"  # a password hash no password matches (password_matches wants scrypt$…)
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class UserError(LoupeError, ValueError):
    """A user command that cannot be carried out, with a sentence saying why."""


@dataclass(frozen=True)
class UserRow:
    """A user without the password hash."""

    id: int
    name: str
    role: str
    disabled: bool


def hash_password(password: str) -> str:
    """A salted scrypt hash in the form scrypt$n$r$p$salt$digest."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, **_SCRYPT)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${encoded[0]}${encoded[1]}"


def password_matches(password: str, stored: str) -> bool:
    """True when password hashes to the stored scrypt hash."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p))
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def add_user(database: Database, name: str, role: str, password: str) -> UserRow:
    """Create an account; the name must be new and the role known."""
    name = name.strip()
    if not name:
        raise UserError("a user needs a name")
    if not name.isprintable():
        raise UserError("a user name can hold only printable characters")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise UserError("the password must have at least 8 characters")
    with database.write() as session:
        if session.scalar(select(User).where(User.name == name)) is not None:
            raise UserError(f"a user called {name!r} exists already")
        user = User(name=name, role=role, password_hash=hash_password(password))
        session.add(user)
        session.flush()
        return UserRow(user.id, user.name, user.role, user.disabled)


def ensure_account_without_login(database: Database, name: str, role: str) -> UserRow:
    """The account called name, made with no password (nobody can log in as it) if it is new: it stands for
    someone who works in another tool, such as a Label Studio annotator, so their decisions carry a name."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    for _attempt in range(2):  # two first decisions by the same person may race to make the account
        try:
            with database.write() as session:
                user = session.scalar(select(User).where(User.name == name))
                if user is None:
                    user = User(name=name, role=role, password_hash=NO_LOGIN)
                    session.add(user)
                    session.flush()
                return UserRow(user.id, user.name, user.role, user.disabled)
        except IntegrityError:
            continue
    raise UserError(f"could not make the account {name!r}")


class _VerifiedPasswords:
    """Passwords recently verified against a stored hash, as keyed HMACs (never the passwords).

    HTTP Basic sends the password with every request, and scrypt is slow on purpose (~50 ms): without
    this, eight experts at work would spend the CPU on hashing. The stored hash is part of the key, so
    a password reset invalidates the entry; the account is still read from the database every time.
    """

    def __init__(self, capacity: int = 10_000):
        self._key = os.urandom(32)
        self._seen: dict[bytes, None] = {}
        self._capacity = capacity

    def _digest(self, stored: str, password: str) -> bytes:
        return hmac.new(self._key, f"{stored}\0{password}".encode(), hashlib.sha256).digest()

    def matches(self, password: str, stored: str) -> bool:
        digest = self._digest(stored, password)
        if digest in self._seen:
            return True
        if not password_matches(password, stored):
            return False
        if len(self._seen) >= self._capacity:
            self._seen.pop(next(iter(self._seen)))
        self._seen[digest] = None
        return True


_verified = _VerifiedPasswords()
# Checked against when the name is unknown, so that an unknown name costs the same scrypt as a known
# one: answer times do not tell which names exist.
_DECOY_HASH = hash_password(base64.b64encode(os.urandom(24)).decode())


def authenticate(database: Database, name: str, password: str) -> UserRow | None:
    """The enabled user with this name and password, else None (the same work whatever is wrong)."""
    user = None
    if _storable(name):
        with database.read() as session:
            user = session.scalar(select(User).where(User.name == name))
    if user is None:
        password_matches(password, _DECOY_HASH)
        return None
    matches = _verified.matches(password, user.password_hash)
    if user.disabled or not matches:
        return None
    return UserRow(user.id, user.name, user.role, user.disabled)


def _storable(name: str) -> bool:
    # PostgreSQL refuses NUL in text (an error, not "no such user"); no stored name holds one.
    return "\x00" not in name


def get_user(database: Database, name: str) -> UserRow | None:
    """The user called name, or None."""
    if not _storable(name):
        return None
    with database.read() as session:
        user = session.scalar(select(User).where(User.name == name))
        return UserRow(user.id, user.name, user.role, user.disabled) if user else None


def list_users(database: Database) -> list[UserRow]:
    """Every user, by name."""
    with database.read() as session:
        return [UserRow(u.id, u.name, u.role, u.disabled) for u in session.scalars(select(User).order_by(User.name))]


def set_password(database: Database, name: str, password: str) -> None:
    """Give the user a new password (an admin's reset)."""
    if len(password) < 8:
        raise UserError("the password must have at least 8 characters")
    with database.write() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise UserError(f"there is no user called {name!r}")
        user.password_hash = hash_password(password)
        delete_user_sessions(session, user.id)  # the old password's sessions end with it


def set_disabled(database: Database, name: str, disabled: bool) -> None:
    """Disable an account (it can no longer log in or act) or enable it again."""
    with database.write() as session:
        user = session.scalar(select(User).where(User.name == name))
        if user is None:
            raise UserError(f"there is no user called {name!r}")
        if disabled and user.role == "admin":
            others = session.scalar(
                select(func.count()).select_from(User).where(User.role == "admin", ~User.disabled, User.id != user.id)
            )
            if not others:
                raise UserError("this is the last enabled admin; enable or add another admin first")
        user.disabled = disabled
        if disabled:
            delete_user_sessions(session, user.id)
