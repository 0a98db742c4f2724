"""Helpers every stage's command line uses: logging set-up and turning input errors into exit codes."""
from __future__ import annotations

import argparse
import functools
import logging
import sys

from starfm.io import StarfmInputError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(log_file: str | None = None, verbose: bool = False) -> None:
    """Log to stderr (and to ``log_file`` when given, as Snakemake's ``log:`` asks)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT,
                        handlers=handlers, force=True)


def stage_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with the options every stage shares (``--log``, ``--verbose``)."""
    parser = argparse.ArgumentParser(prog=f"python -m starfm {prog}", description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--log", default=None, help="also write the log to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run_cli(func):
    """Decorator for ``cli(argv)``: an input error prints one clear line and exits 1."""
    @functools.wraps(func)
    def wrapper(argv=None):
        try:
            return func(argv)
        except StarfmInputError as exc:
            logging.getLogger("starfm").error("%s", exc)
            print(f"starfm: error: {exc}", file=sys.stderr)
            return 1
    return wrapper


def json_object(value, option: str) -> dict:
    """A command-line JSON object (``--cuts '{...}'``), or a dict passed through by Python callers."""
    import json

    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise StarfmInputError(f"{option}: not valid JSON ({exc}): {value!r}") from exc
    if not isinstance(value, dict):
        raise StarfmInputError(f"{option}: expected a JSON object, got {value!r}")
    return value
