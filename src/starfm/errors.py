"""The errors a stage reports in one line (no traceback), naming the file or config key and the
problem; :func:`starfm.cli_common.run_cli` prints them. Imports nothing of starfm."""
from __future__ import annotations

from typing import Iterable


class StarfmError(RuntimeError):
    """An error a stage reports in one line (no traceback): the message says what and where."""


class StarfmInputError(StarfmError):
    """Bad input: the message names the file (or config key) and the problem."""


def require_columns(available: Iterable[str], required: Iterable[str], source: str) -> None:
    """Raise :class:`StarfmInputError` listing what is missing and what the file has."""
    available = list(available)
    missing = [c for c in required if c not in available]
    if missing:
        raise StarfmInputError(
            f"{source}: missing column(s) {missing}; the file has {sorted(available)}")


def require_rows(n_rows: int, source: str) -> None:
    if n_rows == 0:
        raise StarfmInputError(f"{source}: the table is empty")
