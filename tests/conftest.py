"""Shared fixtures. Real-data tests find MIT-BIH through MITBIH_DIR; without it they skip with
the reason, except under CI (CI=true), where missing data is a failure, never a silent skip."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _mitbih_dir() -> Path | None:
    d = os.environ.get("MITBIH_DIR")
    if d and (Path(d) / "100.hea").exists():
        return Path(d).resolve()
    return None


@pytest.fixture(scope="session")
def mitbih_dir() -> Path:
    """Folder with the real MIT-BIH records."""
    d = _mitbih_dir()
    if d is None:
        msg = f"MIT-BIH records not found: set MITBIH_DIR (now {os.environ.get('MITBIH_DIR')!r})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " - CI must run the real-data tests")
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache folder for the whole session, so real-data tests share built caches."""
    return tmp_path_factory.mktemp("cache")
