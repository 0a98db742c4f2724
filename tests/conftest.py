"""Shared fixtures: where the real-data fixtures live, and the repository root."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    env = os.environ.get("STARFM_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """``../shared/realdata`` (real Gaia/APOGEE files); CI clones with ``../shared`` beside it."""
    path = _shared_dir() / "realdata"
    if not path.is_dir():
        pytest.fail(f"real-data fixtures not found at {path} (set STARFM_SHARED)")
    return path
