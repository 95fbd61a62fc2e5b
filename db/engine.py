"""Opening a database: the engine, SQLite pragmas, sessions and schema upgrades."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from errors import Unavailable

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


class DatabaseBusy(Unavailable):
    """A write that waited past the busy timeout for its turn."""


MIGRATION_LOCK_ID = 0x4C6F757065  # "Loupe": the PostgreSQL advisory lock held while migrating


def _prepare_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling never issues BEGIN IMMEDIATE, and a deferred
    # transaction that upgrades to a writer fails at once under WAL instead of waiting on
    # the busy timeout. So the driver is put in autocommit mode and Loupe emits BEGIN itself.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


class Database:
    """One database: read with `read()`, change with `write()` (a short transaction)."""

    def __init__(self, url: str, *, upgrade: bool = True):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
            _prepare_sqlite(self.engine)
            writer = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            writer = self.engine
        # SQLite: this process's writers queue on a lock instead of in SQLite's busy handler, whose
        # sleeps grow to 100 ms and wake in no order (eight reviewers at once saw a 1.4 s p99).
        # Writers in other processes still meet the busy timeout.
        self._write_turn = threading.RLock() if self.is_sqlite else None
        self._read_sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(writer, expire_on_commit=False)
        self.write_engine = writer  # for libraries that write on their own (APScheduler's job store)
        if upgrade:
            self.upgrade()

    def upgrade(self) -> None:
        """Bring the schema to the newest migration."""
        # Processes that open a fresh database at the same moment would each run the migrations: the
        # write lock (SQLite) or an advisory lock (PostgreSQL) makes the later ones wait and find head.
        with self.write_engine.begin() as connection:
            if not self.is_sqlite:
                connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_ID})")
            from alembic import command  # here: a process that never migrates (predict-only) never loads it

            config = alembic_config(self.url)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; nothing it does is committed."""
        with self._read_sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes commit together when the block ends, or roll back."""
        with self._writers_take_turns(), self._write_sessions() as session, session.begin():
            yield session

    @contextmanager
    def _writers_take_turns(self) -> Iterator[None]:
        if self._write_turn is None:
            yield
            return
        if not self._write_turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            raise DatabaseBusy(f"the database stayed busy for {SQLITE_BUSY_TIMEOUT_MS // 1000} s; try again")
        try:
            yield
        finally:
            self._write_turn.release()

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def alembic_config(url: str):
    """An Alembic config pointing at Loupe's migrations."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config
