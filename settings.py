"""Loupe's settings, read once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float_env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass(frozen=True)
class Settings:
    """Everything an operator can tune; see the README's Configuration table."""

    data_dir: Path = field(default_factory=lambda: Path("data"))
    database_url: str | None = None
    valid_pct: float = 0.2
    split_seed: int = 42
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_zip_bytes: int = 2 * 1024 * 1024 * 1024
    thumbnail_px: int = 160
    url_timeout_s: float = 10.0
    url_retries: int = 2
    url_workers: int = 8
    allow_private_urls: bool = False
    predict_threads: int = 2
    login_failures_per_user: int = 5
    login_failures_per_address: int = 20
    login_window_s: float = 300.0
    predict_rate_per_s: float = 10.0  # per client address; 0 turns the limit off
    predict_burst: int = 30
    predict_concurrency: int = 4  # Predict-page events decoding and predicting at once (the rest wait)
    upload_rate_per_s: float = 2.0  # public page uploads per client address (token bucket); 0: off
    upload_burst: int = 10
    max_request_bytes: int = 1024 * 1024  # body of any request that is not an image or admin upload
    web_cache_max_age_s: float = 900.0  # uploads and cached copies of the web pages live this long
    web_cache_max_bytes: int = 500 * 1024 * 1024  # per folder (uploads, copies) and page
    web_cache_max_files: int = 5000
    session_idle_s: float = 1800.0  # a /review login ends after this long unused
    session_max_s: float = 12 * 3600.0  # and this long after it began, used or not
    allowed_roots: tuple[Path, ...] = ()  # folders commands may import from / export to; empty: anywhere
    training_worker: str = "local"  # "external": web processes only queue runs; `server.py worker` trains
    scheduler: bool = True  # the retraining loop; tests and one-off commands run without it
    scheduler_tick_s: float = 5.0
    retrain_check_s: float = 30.0

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from LOUPE_* variables and DATABASE_URL."""
        return cls(
            data_dir=Path(os.environ.get("LOUPE_DATA_DIR", "data")),
            database_url=os.environ.get("DATABASE_URL") or None,
            valid_pct=_float_env("LOUPE_VALID_PCT", 0.2),
            split_seed=_int_env("LOUPE_SPLIT_SEED", 42),
            max_image_bytes=_int_env("LOUPE_MAX_IMAGE_BYTES", 20 * 1024 * 1024),
            max_image_pixels=_int_env("LOUPE_MAX_IMAGE_PIXELS", 40_000_000),
            url_timeout_s=_float_env("LOUPE_URL_TIMEOUT_S", 10.0),
            url_retries=_int_env("LOUPE_URL_RETRIES", 2),
            url_workers=_int_env("LOUPE_URL_WORKERS", 8),
            allow_private_urls=os.environ.get("LOUPE_ALLOW_PRIVATE_URLS", "").lower() in ("1", "true", "yes"),
            predict_threads=_int_env("LOUPE_PREDICT_THREADS", 2),
            login_failures_per_user=_int_env("LOUPE_LOGIN_FAILURES_PER_USER", 5),
            login_failures_per_address=_int_env("LOUPE_LOGIN_FAILURES_PER_ADDRESS", 20),
            login_window_s=_float_env("LOUPE_LOGIN_WINDOW_S", 300.0),
            predict_rate_per_s=_float_env("LOUPE_PREDICT_RATE_PER_S", 10.0),
            predict_burst=_int_env("LOUPE_PREDICT_BURST", 30),
            predict_concurrency=_int_env("LOUPE_PREDICT_CONCURRENCY", 4),
            upload_rate_per_s=_float_env("LOUPE_UPLOAD_RATE_PER_S", 2.0),
            upload_burst=_int_env("LOUPE_UPLOAD_BURST", 10),
            max_request_bytes=_int_env("LOUPE_MAX_REQUEST_BYTES", 1024 * 1024),
            web_cache_max_age_s=_float_env("LOUPE_WEB_CACHE_MAX_AGE_S", 900.0),
            web_cache_max_bytes=_int_env("LOUPE_WEB_CACHE_MAX_BYTES", 500 * 1024 * 1024),
            web_cache_max_files=_int_env("LOUPE_WEB_CACHE_MAX_FILES", 5000),
            session_idle_s=_float_env("LOUPE_SESSION_IDLE_S", 1800.0),
            session_max_s=_float_env("LOUPE_SESSION_MAX_S", 12 * 3600.0),
            allowed_roots=tuple(Path(p) for p in os.environ.get("LOUPE_ALLOWED_ROOTS", "").split(os.pathsep) if p),
            training_worker=os.environ.get("LOUPE_TRAINING_WORKER", "local"),
            scheduler=os.environ.get("LOUPE_SCHEDULER", "1").lower() not in ("0", "false", "no", "off"),
            scheduler_tick_s=_float_env("LOUPE_SCHEDULER_TICK_S", 5.0),
            retrain_check_s=_float_env("LOUPE_RETRAIN_CHECK_S", 30.0),
        )

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, or a SQLite file inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'loupe.db').resolve()}"
