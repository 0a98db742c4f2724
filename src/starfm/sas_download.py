"""Real mode: download an APOGEE catalogue (allStar, DistMass) from the SDSS SAS, resumably.

The body is streamed in chunks to ``<out>.part`` (never held in memory) with a tqdm bar. An
interrupted transfer resumes from the bytes already there with ``Range: bytes=N-``; a server that
ignores Range (answers 200) is restarted from zero. A finished transfer is verified -- byte count
against Content-Length / Content-Range, a FITS primary header (``SIMPLE  =   T``), a size that is
a multiple of 2880, optional sha256/md5, optional NAXIS2 row count -- and only then renamed onto
``<out>``. Transient failures (connection drops, timeouts, HTTP 408/429/5xx) are retried with
exponential back-off; the retry budget is reset whenever an attempt made progress.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import requests
from tqdm import tqdm

from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.errors import StarfmInputError

log = logging.getLogger("starfm.download")

FITS_BLOCK = 2880
FITS_SIGNATURE = b"SIMPLE  =                    T"
TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
TRANSIENT_ERRORS = (requests.ConnectionError, requests.Timeout,
                    requests.exceptions.ChunkedEncodingError)


class DownloadError(StarfmInputError):
    """A download that failed for good; the message names the URL, status and bytes so far."""


class _Transient(Exception):
    """One failed attempt that is worth retrying."""


def fits_row_count(path: str | Path, hdu: int = 1) -> int:
    """NAXIS2 (rows) of table HDU ``hdu``, read from the header only."""
    from astropy.io import fits
    try:
        header = fits.getheader(path, hdu)
    except (OSError, IndexError, ValueError) as exc:
        raise DownloadError(f"{path}: cannot read the header of HDU {hdu} ({exc})") from exc
    if "NAXIS2" not in header:
        raise DownloadError(f"{path}: HDU {hdu} has no NAXIS2 (not a table)")
    return int(header["NAXIS2"])


def check_fits(path: str | Path, expect_rows: int | None = None, sha256: str | None = None,
               md5: str | None = None, hdu: int = 1) -> None:
    """Raise :class:`DownloadError` unless ``path`` looks like a complete FITS file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(len(FITS_SIGNATURE))
    if head != FITS_SIGNATURE:
        raise DownloadError(f"{path}: not a FITS file (starts with {head[:30]!r}, expected "
                            f"{FITS_SIGNATURE!r}); an error page or a corrupt transfer?")
    if size % FITS_BLOCK:
        raise DownloadError(f"{path}: size {size} is not a multiple of {FITS_BLOCK} (truncated FITS)")
    for name, want in (("sha256", sha256), ("md5", md5)):
        if want:
            got = _digest(path, name)
            if got.lower() != want.lower():
                raise DownloadError(f"{path}: {name} {got} != expected {want}")
    if expect_rows is not None:
        rows = fits_row_count(path, hdu)
        if rows != expect_rows:
            raise DownloadError(f"{path}: HDU {hdu} has NAXIS2 = {rows} rows, expected {expect_rows}")


def _digest(path: Path, name: str) -> str:
    h = hashlib.new(name)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _total_from_content_range(value: str | None) -> int | None:
    """``bytes 100-999/1000`` or ``bytes */1000`` -> 1000 (None if unknown)."""
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _start_from_content_range(value: str | None) -> int | None:
    try:
        return int(value.split()[1].split("-")[0])
    except (AttributeError, IndexError, ValueError):
        return None


def _attempt(session: requests.Session, url: str, part: Path, timeout: float,
             chunk_size: int) -> tuple[int | None, bool]:
    """One GET into ``part`` (resuming if it has bytes). Returns (expected total size, done)."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        resp = session.get(url, headers=headers, stream=True, timeout=timeout)
    except TRANSIENT_ERRORS as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from exc
    with resp:
        status = resp.status_code
        if status == 416 and offset:
            # nothing left to send: .part may already be whole (a crash before the rename)
            total = _total_from_content_range(resp.headers.get("Content-Range"))
            log.info("%s: server says range %d- is unsatisfiable (total %s)", url, offset, total)
            if total == offset:
                return total, True
            part.unlink()
            raise _Transient(f"HTTP 416 with {offset} bytes on disk, total {total}: restarting")
        if status in TRANSIENT_STATUS:
            raise _Transient(f"HTTP {status} {resp.reason}")
        if status not in (200, 206):
            raise DownloadError(f"{url}: HTTP {status} {resp.reason} ({offset} bytes on disk in {part})")
        length = resp.headers.get("Content-Length")
        if status == 206:
            start = _start_from_content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Transient(f"server resumed at byte {start}, not {offset}: restarting")
            total = _total_from_content_range(resp.headers.get("Content-Range"))
            if total is None and length is not None:
                total = offset + int(length)
            mode = "ab"
        else:
            if offset:
                log.warning("%s: server ignored Range (HTTP 200); restarting from byte 0 "
                            "(%d bytes discarded)", url, offset)
            offset, mode = 0, "wb"
            total = int(length) if length is not None else None
        received = offset
        try:
            with open(part, mode) as f, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                             unit_divisor=1024, desc=part.name.removesuffix(".part"),
                                             mininterval=2.0, leave=False) as bar:
                for chunk in resp.iter_content(chunk_size=chunk_size):
                    f.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        except TRANSIENT_ERRORS as exc:
            raise _Transient(f"connection lost after {received} of {total} bytes "
                             f"({type(exc).__name__})") from exc
        if total is not None and received < total:
            raise _Transient(f"transfer ended after {received} of {total} bytes")
        if total is not None and received > total:
            part.unlink()
            raise DownloadError(f"{url}: received {received} bytes, more than the {total} announced")
        return total, True


def download(url: str, out: str | Path, *, expect_rows: int | None = None, sha256: str | None = None,
             md5: str | None = None, retries: int = 5, backoff: float = 2.0, timeout: float = 60.0,
             chunk_size: int = 1 << 20, session: requests.Session | None = None) -> Path:
    """Download ``url`` to ``out`` (resumable, verified, atomic). Returns ``out``.

    ``retries``: failed attempts in a row (without progress) before giving up; the wait before
    retry k is ``backoff * 2**(k-1)`` seconds.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(out.name + ".part")
    session = session or requests.Session()
    failures = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            total, _ = _attempt(session, url, part, timeout, chunk_size)
            break
        except _Transient as exc:
            now = part.stat().st_size if part.exists() else 0
            failures = 0 if now > before else failures
            failures += 1
            if failures > retries:
                raise DownloadError(f"{url}: giving up after {failures} failed attempts in a row; "
                                    f"last: {exc}; {now} bytes kept in {part} (a rerun resumes)") from exc
            wait = backoff * 2 ** (failures - 1)
            log.warning("%s: %s; retry %d/%d in %.1f s (%d bytes on disk)", url, exc, failures,
                        retries, wait, now)
            time.sleep(wait)
    size = part.stat().st_size
    log.info("%s: received %d bytes (expected %s)", url, size, total)
    try:
        check_fits(part, expect_rows=expect_rows, sha256=sha256, md5=md5)
    except DownloadError:
        part.unlink()      # a corrupt payload would only be resumed onto: start afresh next time
        raise
    os.replace(part, out)
    log.info("verified and moved into place: %s", out)
    return out


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("download-apogee", "Download an APOGEE catalogue from the SDSS SAS: "
                          "streamed, resumable (<out>.part + HTTP Range), retried with back-off, "
                          "verified (size, FITS header, optional checksum / row count) before it "
                          "is moved onto --out.")
    parser.add_argument("--url", required=True, help="SAS URL of the file")
    parser.add_argument("--out", required=True, help="where the verified file goes")
    parser.add_argument("--sha256", default=None, help="expected sha256 hex digest")
    parser.add_argument("--md5", default=None, help="expected md5 hex digest")
    parser.add_argument("--expect-rows", type=int, default=None,
                        help="expected NAXIS2 of HDU 1 (e.g. 733901 for DR17 allStar)")
    parser.add_argument("--retries", type=int, default=8,
                        help="failed attempts in a row (no progress) before giving up")
    parser.add_argument("--backoff", type=float, default=5.0, help="first retry wait [s], doubled each time")
    parser.add_argument("--timeout", type=float, default=120.0, help="connect/read timeout [s]")
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    download(args.url, args.out, expect_rows=args.expect_rows, sha256=args.sha256, md5=args.md5,
             retries=args.retries, backoff=args.backoff, timeout=args.timeout)
    return 0
