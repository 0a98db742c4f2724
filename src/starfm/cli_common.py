"""Helpers every stage's command line uses: logging set-up and turning input errors into exit codes."""
from __future__ import annotations

import argparse
import functools
import logging
import sys

from starfm import kernels
from starfm.errors import StarfmError, StarfmInputError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_log = logging.getLogger("starfm")
_logging_ready = False


def setup_logging(log_file: str | None = None, verbose: bool = False) -> None:
    """Log to stderr (and to ``log_file`` when given, as Snakemake's ``log:`` asks)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file, mode="w"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT,
                        handlers=handlers, force=True)
    if log_file:  # the stage's log file records the CPU kernels it ran with (stderr stays terse)
        handlers[-1].handle(_log.makeRecord(_log.name, logging.INFO, __file__, 0, "%s",
                                            (kernels.describe(),), None))
    global _logging_ready
    _logging_ready = True


def stage_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An argparse parser with the options every stage shares (``--log``, ``--verbose``)."""
    parser = argparse.ArgumentParser(prog=f"python -m starfm {prog}", description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--log", default=None, help="also write the log to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def run_cli(func):
    """Decorator for ``cli(argv)``: any error ends the stage with one line and exit code 1.

    The line goes through the log (stderr and ``--log``) once logging is set up, else to stderr.
    A :class:`~starfm.errors.StarfmError` is the stage's own message (the file and the problem); any
    other exception is unexpected content or a bug: one line with its type and message, and the
    traceback only in the log file at debug level.
    """
    @functools.wraps(func)
    def wrapper(argv=None):
        global _logging_ready
        _logging_ready = False
        try:
            return func(argv)
        except StarfmError as exc:
            _report(f"error: {exc}")
        except Exception as exc:  # noqa: BLE001 - the one place that turns crashes into one line
            _report(f"error: unexpected {type(exc).__name__}: {exc} "
                    f"(rerun with --verbose --log FILE for the traceback)")
            _log.debug("traceback", exc_info=True)
        return 1
    return wrapper


def _report(line: str) -> None:
    """One line: through the log ("... ERROR starfm: error: ...") or, before logging is set up,
    as ``starfm: error: ...`` on stderr."""
    line = " ".join(line.split("\n"))
    if _logging_ready:
        _log.error("%s", line)
    else:
        print(f"starfm: {line}", file=sys.stderr)


def json_object(value, option: str) -> dict:
    """A command-line JSON object (``--settings '{...}'``), or a dict passed through by Python callers."""
    import json

    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise StarfmInputError(f"{option}: not valid JSON ({exc}): {value!r}") from exc
    if not isinstance(value, dict):
        raise StarfmInputError(f"{option}: expected a JSON object, got {value!r}")
    return value
