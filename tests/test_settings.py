"""Settings.from_env: every default lives once, on the dataclass, and every variable is read by its field's type."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from errors import LoupeError
from settings import SettingError, Settings, env_name

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No setting's variable is set."""
    for setting in dataclasses.fields(Settings):
        monkeypatch.delenv(env_name(setting.name), raising=False)
    return monkeypatch


def test_defaults_are_the_dataclass_defaults(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings.from_env() == Settings()
    assert Settings.from_env().data_dir == Path("data")
    assert Settings.from_env().database_url is None


def test_every_configuration_variable_in_the_readme_sets_a_field() -> None:
    table = README.read_text().split("| `LOUPE_DATA_DIR`", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"`((?:LOUPE|DATABASE)_[A-Z_]+)`", "| `LOUPE_DATA_DIR`" + table))
    known = {env_name(setting.name) for setting in dataclasses.fields(Settings)}
    assert documented and documented <= known, documented - known


def test_int_float_and_str_are_read(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LOUPE_SPLIT_SEED", "7")
    clean_env.setenv("LOUPE_MAX_ZIP_BYTES", "1024")  # a field that had no variable before
    clean_env.setenv("LOUPE_VALID_PCT", "0.35")
    clean_env.setenv("LOUPE_TRAINING_WORKER", "external")
    clean_env.setenv("LOUPE_DATA_DIR", "/srv/loupe")
    settings = Settings.from_env()
    assert settings.split_seed == 7 and settings.max_zip_bytes == 1024
    assert settings.valid_pct == pytest.approx(0.35)
    assert settings.training_worker == "external"
    assert settings.data_dir == Path("/srv/loupe")
    assert settings.url_workers == Settings().url_workers  # untouched fields keep their defaults


@pytest.mark.parametrize(
    ("raw", "scheduler", "private"),
    [("0", False, False), ("off", False, False), ("FALSE", False, False), ("1", True, True), ("Yes", True, True)],
)
def test_bools_are_read(clean_env: pytest.MonkeyPatch, raw: str, scheduler: bool, private: bool) -> None:
    clean_env.setenv("LOUPE_SCHEDULER", raw)
    clean_env.setenv("LOUPE_ALLOW_PRIVATE_URLS", raw)
    settings = Settings.from_env()
    assert settings.scheduler is scheduler
    assert settings.allow_private_urls is private


def test_lenient_bools_keep_their_old_reading(clean_env: pytest.MonkeyPatch) -> None:
    """The scheduler is on unless turned off; private URLs are off unless turned on (and "on" never did)."""
    clean_env.setenv("LOUPE_SCHEDULER", "maybe")
    clean_env.setenv("LOUPE_ALLOW_PRIVATE_URLS", "on")
    settings = Settings.from_env()
    assert settings.scheduler is True
    assert settings.allow_private_urls is False


def test_path_tuple_is_split_on_pathsep(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LOUPE_ALLOWED_ROOTS", os.pathsep.join(["/a", "", "/b/c", ""]))
    assert Settings.from_env().allowed_roots == (Path("/a"), Path("/b/c"))
    clean_env.setenv("LOUPE_ALLOWED_ROOTS", "")
    assert Settings.from_env().allowed_roots == ()


def test_database_url_is_read_and_empty_means_none(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql+psycopg://loupe@db:5432/loupe")
    settings = Settings.from_env()
    assert settings.database_url == "postgresql+psycopg://loupe@db:5432/loupe"
    assert settings.resolved_database_url == "postgresql+psycopg://loupe@db:5432/loupe"
    clean_env.setenv("DATABASE_URL", "")
    assert Settings.from_env().database_url is None


@pytest.mark.parametrize(("name", "raw"), [("LOUPE_SPLIT_SEED", "forty-two"), ("LOUPE_URL_TIMEOUT_S", "ten")])
def test_a_bad_value_is_a_setting_error_naming_the_variable(clean_env: pytest.MonkeyPatch, name: str, raw: str) -> None:
    clean_env.setenv(name, raw)
    with pytest.raises(SettingError) as raised:
        Settings.from_env()
    assert isinstance(raised.value, LoupeError)
    assert name in raised.value.message and raw in raised.value.message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


@dataclasses.dataclass(frozen=True)
class _WithFlag(Settings):
    """Settings plus a plain bool field, to exercise the generic bool reading."""

    test_flag: bool = False


@pytest.mark.parametrize(
    ("raw", "expected"), [("on", True), ("TRUE", True), ("1", True), ("Off", False), ("no", False)]
)
def test_a_plain_bool_field_is_read(clean_env: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    clean_env.setenv("LOUPE_TEST_FLAG", raw)
    assert _WithFlag.from_env().test_flag is expected


def test_a_bad_bool_is_a_setting_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LOUPE_TEST_FLAG", "perhaps")
    with pytest.raises(SettingError, match="LOUPE_TEST_FLAG"):
        _WithFlag.from_env()
