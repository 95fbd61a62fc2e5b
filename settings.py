"""Loupe's settings, read once from the environment."""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from errors import LoupeError

_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


class SettingError(LoupeError):
    """An environment variable holds a value Loupe cannot read as its setting."""

    status = 500  # the operator's configuration, not the request, is wrong


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
    label_studio_max_request_bytes: int = 32 * 1024 * 1024  # a Label Studio /predict: every selected task
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
    embedding_model: Path | None = None  # an ONNX image encoder the ranking embeds with; None: built-in Lite0
    embedding_size: int = 224  # the side, in pixels, of the square images that model takes
    embedding_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # per RGB channel, on 0–1 pixels
    embedding_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    @classmethod
    def from_env(cls) -> Settings:
        """Build settings from LOUPE_* variables and DATABASE_URL; unset ones keep the defaults above."""
        hints = typing.get_type_hints(cls)
        values = {}
        for setting in dataclasses.fields(cls):
            name = env_name(setting.name)
            raw = os.environ.get(name)
            if raw is None:
                continue
            parse = _SPECIAL_PARSERS.get(setting.name) or _parser_for(hints[setting.name])
            try:
                values[setting.name] = parse(raw)
            except ValueError as error:
                raise SettingError(f"{name} is set to {raw!r}, which Loupe cannot use: {error}.") from None
        return cls(**values)

    @property
    def resolved_database_url(self) -> str:
        """DATABASE_URL, or a SQLite file inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'loupe.db').resolve()}"


# Settings read from a variable other than LOUPE_<FIELD NAME>.
_SPECIAL_NAMES = {"database_url": "DATABASE_URL"}

# Settings read otherwise than by their type's parser: more leniently, as they always have been, or with a check.
_SPECIAL_PARSERS: dict[str, Callable[[str], object]] = {
    "database_url": lambda raw: raw or None,  # empty: the SQLite file in the data directory
    "embedding_model": lambda raw: Path(raw.strip()).expanduser() if raw.strip() else None,  # empty: built-in
    "embedding_size": lambda raw: _parse_positive_int(raw),
    "embedding_std": lambda raw: _parse_positive_floats(raw),  # a zero would divide every pixel by zero
    "scheduler": lambda raw: raw.lower() not in _FALSE_WORDS,  # on unless turned off
    "allow_private_urls": lambda raw: raw.lower() in ("1", "true", "yes"),  # off unless turned on
}


def env_name(field_name: str) -> str:
    """The environment variable that sets the Settings field `field_name`."""
    return _SPECIAL_NAMES.get(field_name, "LOUPE_" + field_name.upper())


def _parse_bool(raw: str) -> bool:
    """True for 1/true/yes/on, False for 0/false/no/off (any case); anything else is refused."""
    word = raw.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ValueError(f"expected one of {', '.join(_TRUE_WORDS + _FALSE_WORDS)}")


def _parse_int(raw: str) -> int:
    """A whole number."""
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a whole number") from None


def _parse_positive_int(raw: str) -> int:
    """A whole number above zero."""
    value = _parse_int(raw)
    if value < 1:
        raise ValueError("expected a whole number above zero")
    return value


def _parse_float(raw: str) -> float:
    """A number."""
    try:
        return float(raw)
    except ValueError:
        raise ValueError("expected a number") from None


def _parse_paths(raw: str) -> tuple[Path, ...]:
    """Paths separated by os.pathsep; empty parts are skipped."""
    return tuple(Path(part) for part in raw.split(os.pathsep) if part)


def _parse_three_floats(raw: str) -> tuple[float, float, float]:
    """Three numbers separated by commas, one per RGB channel (e.g. "0.5,0.5,0.5")."""
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(value) for value in values):
        raise ValueError("expected three numbers separated by commas (red, green, blue), e.g. 0.5,0.5,0.5")
    return values


def _parse_positive_floats(raw: str) -> tuple[float, float, float]:
    """Three numbers as _parse_three_floats, each above zero."""
    values = _parse_three_floats(raw)
    if min(values) <= 0:
        raise ValueError("every channel's value must be above zero")
    return values


_TYPE_PARSERS: dict[object, Callable[[str], object]] = {
    bool: _parse_bool,
    int: _parse_int,
    float: _parse_float,
    str: str,
    Path: Path,
    tuple[Path, ...]: _parse_paths,
    tuple[float, float, float]: _parse_three_floats,
}


def _parser_for(annotation: object) -> Callable[[str], object]:
    """The parser for a field's type; a type without one is a programming error, found at once."""
    try:
        return _TYPE_PARSERS[annotation]
    except KeyError:
        raise TypeError(f"no environment parser for settings of type {annotation!r}") from None
