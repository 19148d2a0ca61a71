"""`llmcache check-config` as a user runs it: a child process, its output and exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.subprocess


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_check_config_prints_tiers() -> None:
    result = run_cli("check-config", "config.yaml")
    assert result.returncode == 0, result.stderr
    assert "local (local)" in result.stdout and "disk (disk)" in result.stdout


def test_check_config_exit_2_on_error(tmp_path: Path) -> None:
    result = run_cli("check-config", str(write(tmp_path, "cache: {tiers: [{type: memcached}]}\n")))
    assert result.returncode == 2
    assert "memcached" in result.stderr
    missing = run_cli("check-config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr


def test_an_unreadable_config_exits_2_without_a_traceback(tmp_path: Path) -> None:
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00cache: {}\n")
    result = run_cli("check-config", str(binary))
    assert result.returncode == 2 and "Traceback" not in result.stderr
