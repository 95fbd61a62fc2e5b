"""Every command is documented: listed by `loupe --help`, with its own --help, and in the README's table."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path ("train", "user add", …) the parser knows."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = commands(sub, (*prefix, name))
                found += nested or [(*prefix, name)]
    return found


COMMANDS = commands(build_parser())


def test_the_parser_has_the_commands_we_expect_to_document():
    assert {"serve", "demo", "train", "decide", "undo", "queue"} <= {path[0] for path in COMMANDS}
    assert ("user", "add") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_in_the_help_and_the_readme(path, capsys):
    parser = build_parser()
    top_help = parser.format_help()
    assert re.search(rf"^\s+{re.escape(path[0])}\s", top_help, re.M), f"{path[0]} missing from loupe --help"
    with pytest.raises(SystemExit) as ended:
        parser.parse_args([*path, "--help"])
    assert ended.value.code == 0 and capsys.readouterr().out.startswith("usage: loupe " + " ".join(path))
    readme = (ROOT / "README.md").read_text()
    assert f"`loupe {' '.join(path)}" in readme, f"`loupe {' '.join(path)}` is not in the README's command table"


def test_the_console_script_and_server_py_run_the_same_cli():
    script = Path(sys.executable).parent / "loupe"
    by_script = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    by_server = subprocess.run(
        [sys.executable, str(ROOT / "server.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert by_script.returncode == by_server.returncode == 0, (by_script.stderr, by_server.stderr)
    assert by_script.stdout == by_server.stdout
