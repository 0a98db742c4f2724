"""Stages ``gaia-source`` and ``gaia-xp``: query the Gaia archive for every APOGEE source_id.

The ids (allStar ``GAIAEDR3_SOURCE_ID``, nonzero, unique, sorted) are split into batches of at
most 5,000 (the archive's limit). Each batch is fetched, parsed down to the columns the
pipeline keeps and cached as its own HDF5 file, named by batch index and a hash of its ids and
written atomically; a rerun skips cached batches, so a killed run resumes. Transient failures
are retried with exponential back-off (``backoff``, ``2*backoff``, ...); a batch that fails for
good raises :class:`GaiaBatchError` naming it. The output is then assembled batch by batch from
the cache (bounded memory for 733,901 ids).

Ids the archive did not return are never dropped silently: ``gaia-source`` keeps one row per
requested id (NaN values, ``astrometric_params_solved`` 0) and logs them; ``gaia-xp`` writes
them to ``--missing`` (stars without XP spectra are simply absent from the archive).
"""
from __future__ import annotations

import hashlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import h5py
import numpy as np
from tqdm import tqdm

from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.archive_formats import XP_FORMATS
from starfm.gaia_archive import MAX_IDS_PER_CALL, AstroqueryGaiaArchive, GaiaArchive, TransientArchiveError
from starfm.errors import StarfmError, StarfmInputError
from starfm.tables import atomic_path, read_table, write_table
from starfm.settings import add_settings_argument, parse_settings
from starfm.xp_tables import (GAIA_SOURCE_DTYPES, N_COEFFICIENTS, XP_ARRAY_COLUMNS, XP_OUTPUT_DTYPES,
                              parse_gaia_source, parse_xp_tables)

log = logging.getLogger(__name__)

ALLSTAR_ID_COLUMN = "GAIAEDR3_SOURCE_ID"


class GaiaBatchError(StarfmError):
    """A batch could not be fetched: the message names it (index, id range, cache file)."""


# ----------------------------------------------------------------------------- ids and batches
def read_allstar_source_ids(path, column: str = ALLSTAR_ID_COLUMN) -> np.ndarray:
    """Nonzero, unique, sorted Gaia source_ids of an allStar file, reading only that column.

    The FITS table is memory-mapped and only one field is copied out, so the 4 GB real
    allStar costs ~6 MB of memory.
    """
    from astropy.io import fits

    path = Path(path)
    if not path.exists():
        raise StarfmInputError(f"{path}: file not found")
    try:
        hdul = fits.open(path, memmap=True)
    except OSError as exc:
        raise StarfmInputError(f"{path}: not a readable FITS file ({exc})") from exc
    with hdul:
        for hdu in hdul[1:]:
            if not isinstance(hdu, fits.BinTableHDU):
                continue
            names = {c.name.upper(): c.name for c in hdu.columns}
            if column.upper() in names:
                ids = np.array(hdu.data.field(names[column.upper()]), dtype=np.int64)
                break
        else:
            raise StarfmInputError(f"{path}: no table HDU has a {column} column")
    n_rows = len(ids)
    ids = np.unique(ids[ids != 0])
    if ids.size == 0:
        raise StarfmInputError(f"{path}: {column} is 0 (unmatched) in all {n_rows} rows")
    log.info("%s: %d rows, %d unique nonzero %s", path, n_rows, ids.size, column)
    return ids


def make_batches(source_ids, batch_size: int) -> list[np.ndarray]:
    """Sorted unique ids in consecutive batches of at most ``batch_size`` (<= 5,000)."""
    if not 1 <= batch_size <= MAX_IDS_PER_CALL:
        raise StarfmInputError(f"gaia.batch_size {batch_size}: must be 1..{MAX_IDS_PER_CALL} (archive limit)")
    ids = np.unique(np.asarray(source_ids, dtype=np.int64))
    return [ids[i:i + batch_size] for i in range(0, len(ids), batch_size)]


def batch_cache_path(cache_dir, kind: str, index: int, ids: np.ndarray) -> Path:
    """``<cache>/<kind>_<index>_<sha1 of the ids>.h5``: a different id list never reuses a file."""
    digest = hashlib.sha1(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()[:12]
    return Path(cache_dir) / f"{kind}_{index:05d}_{digest}.h5"


def _describe(index: int, n_batches: int, ids: np.ndarray, path: Path) -> str:
    return (f"batch {index} of {n_batches} ({len(ids)} ids, source_id {ids[0]}..{ids[-1]}; "
            f"cache {path})")


def _cached(path: Path) -> bool:
    """A cache file that exists and reads back (it was written atomically, so it is complete)."""
    if not path.exists():
        return False
    try:
        read_table(path, ["source_id"])
        return True
    except StarfmInputError:
        log.warning("%s: unreadable cache file, fetching again", path)
        return False


def fetch_batches(kind: str, source_ids, fetch: Callable[[np.ndarray], dict[str, np.ndarray]],
                  cache_dir, batch_size: int = MAX_IDS_PER_CALL, max_retries: int = 5,
                  backoff: float = 2.0, sleep: Callable[[float], None] | None = None,
                  progress: bool = True) -> list[tuple[np.ndarray, Path]]:
    """Fetch every batch not yet cached; return ``[(batch ids, cache path)]`` in id order.

    ``fetch(ids) -> columns`` returns the parsed, kept columns of one archive call. A
    :class:`TransientArchiveError` is retried ``max_retries`` times after waiting
    ``backoff * 2**attempt`` s; any other error, or the last transient one, raises
    :class:`GaiaBatchError`.
    """
    sleep = sleep or (lambda s: time.sleep(s))  # looked up at call time: tests patch time.sleep
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    batches = make_batches(source_ids, batch_size)
    plan = [(ids, batch_cache_path(cache_dir, kind, i, ids)) for i, ids in enumerate(batches)]
    todo = [(i, ids, path) for i, (ids, path) in enumerate(plan) if not _cached(path)]
    log.info("%s: %d ids in %d batches of <= %d; %d cached, %d to fetch (cache %s)", kind,
             sum(len(b) for b in batches), len(batches), batch_size, len(batches) - len(todo),
             len(todo), cache_dir)
    for i, ids, path in tqdm(todo, desc=f"{kind} batches", unit="batch", file=sys.stderr,
                             disable=not progress):
        what = _describe(i, len(batches), ids, path)
        for attempt in range(max_retries + 1):
            try:
                columns = fetch(ids)
                break
            except TransientArchiveError as exc:
                if attempt == max_retries:
                    raise GaiaBatchError(
                        f"{kind} {what} failed after {attempt + 1} attempts: {exc}. "
                        "Rerun to resume: cached batches are kept.") from exc
                delay = backoff * 2 ** attempt
                log.warning("%s %s: transient failure (%s); retry %d/%d in %.1f s", kind, what, exc,
                            attempt + 1, max_retries, delay)
                sleep(delay)
            except Exception as exc:
                raise GaiaBatchError(f"{kind} {what} failed: {type(exc).__name__}: {exc}. "
                                     "Rerun to resume: cached batches are kept.") from exc
        write_table(path, columns, attrs={"kind": kind, "batch_index": i,
                                          "n_requested": len(ids)})
        log.debug("%s %s: %d rows cached", kind, what, len(columns["source_id"]))
    return plan


def _keep_requested(columns: dict[str, np.ndarray], ids: np.ndarray, kind: str) -> dict[str, np.ndarray]:
    """Rows for requested ids only, one per id (the archive should give nothing else)."""
    sid = columns["source_id"]
    _, first = np.unique(sid, return_index=True)
    keep = np.zeros(len(sid), bool)
    keep[first] = True
    extra = ~np.isin(sid, ids)
    if extra.any() or len(first) < len(sid):
        log.warning("%s: archive returned %d unrequested and %d duplicate rows; dropped", kind,
                    int(extra.sum()), len(sid) - len(first))
    keep &= ~extra
    order = np.argsort(sid[keep], kind="stable")
    return {k: v[keep][order] for k, v in columns.items()}


# ----------------------------------------------------------------------------- assembly
def _assemble(plan, out, dtypes: dict[str, np.dtype], n_rows: int,
              rows_of: Callable[[np.ndarray, Path], dict[str, np.ndarray]], attrs: dict) -> None:
    """Write the output column by column from the cached batches, one batch in memory at a time."""
    with atomic_path(out) as tmp:
        with h5py.File(tmp, "w") as f:
            dsets = {k: f.create_dataset(k, shape=(n_rows, N_COEFFICIENTS) if k in XP_ARRAY_COLUMNS
                                         else (n_rows,), dtype=dt) for k, dt in dtypes.items()}
            pos = 0
            for ids, path in plan:
                rows = rows_of(ids, path)
                m = len(rows["source_id"])
                for k in dtypes:
                    dsets[k][pos:pos + m] = rows[k]
                pos += m
            assert pos == n_rows, (pos, n_rows)
            for key, value in attrs.items():
                f.attrs[key] = value


def fetch_gaia_source(source_ids, archive: GaiaArchive, cache_dir, out, batch_size: int = 5000,
                      max_retries: int = 5, backoff: float = 2.0, sleep=None,
                      progress: bool = True) -> dict:
    """gaia_source columns for every id -> ``out`` (one row per requested id, sorted).

    Ids the archive does not return get NaN values and ``astrometric_params_solved`` 0;
    they are counted in the log and in the ``n_missing`` attribute.
    """
    def fetch(ids):
        return _keep_requested(parse_gaia_source(archive.query_gaia_source(ids),
                                                 source="gaia_source answer"), ids, "gaia_source")

    plan = fetch_batches("gaia_source", source_ids, fetch, cache_dir, batch_size, max_retries,
                         backoff, sleep, progress)
    missing: list[np.ndarray] = []

    def rows_of(ids, path):
        got = read_table(path)
        full = {k: (np.full(len(ids), np.nan, dt) if dt.kind == "f" else np.zeros(len(ids), dt))
                for k, dt in GAIA_SOURCE_DTYPES.items()}
        full["source_id"] = ids
        pos = np.searchsorted(ids, got["source_id"])
        for k in GAIA_SOURCE_DTYPES:
            full[k][pos] = got[k]
        found = np.zeros(len(ids), bool)
        found[pos] = True
        missing.append(ids[~found])
        return full

    n = sum(len(ids) for ids, _ in plan)
    # the attribute is written after assembly: count into a list first
    _assemble(plan, out, GAIA_SOURCE_DTYPES, n, rows_of, {"n_requested": n})
    missing_ids = np.concatenate(missing) if missing else np.zeros(0, np.int64)
    with h5py.File(out, "r+") as f:
        f.attrs["n_missing"] = len(missing_ids)
    if len(missing_ids):
        log.warning("gaia_source: %d of %d ids not returned by the archive (kept as NaN rows): %s%s",
                    len(missing_ids), n, missing_ids[:20].tolist(), " ..." if len(missing_ids) > 20 else "")
    log.info("gaia_source: wrote %s (%d rows, %d missing)", out, n, len(missing_ids))
    return {"n_requested": n, "n_missing": int(len(missing_ids)), "missing_source_ids": missing_ids}


def fetch_xp(source_ids, archive: GaiaArchive, cache_dir, out, missing_out, batch_size: int = 5000,
             max_retries: int = 5, backoff: float = 2.0, sleep=None, progress: bool = True) -> dict:
    """XP continuous spectra for every id -> ``out`` (stars with XP, sorted) and ``missing_out``
    (ids without XP, one per line). Correlations are not kept."""
    def fetch(ids):
        return _keep_requested(parse_xp_tables(archive.load_xp_continuous(ids),
                                               source="XP_CONTINUOUS answer"), ids, "xp_continuous")

    plan = fetch_batches("xp_continuous", source_ids, fetch, cache_dir, batch_size, max_retries,
                         backoff, sleep, progress)
    n_rows = 0
    missing = []
    for ids, path in plan:
        with h5py.File(path, "r") as f:
            got = f["source_id"][()]
        n_rows += len(got)
        missing.append(ids[~np.isin(ids, got)])
    missing_ids = np.concatenate(missing) if missing else np.zeros(0, np.int64)
    n_requested = sum(len(ids) for ids, _ in plan)
    _assemble(plan, out, XP_OUTPUT_DTYPES, n_rows, lambda ids, path: read_table(path),
              {"n_requested": n_requested, "n_missing": len(missing_ids)})
    with atomic_path(missing_out) as tmp:
        np.savetxt(tmp, missing_ids, fmt="%d")
    n_bp = n_rp = 0
    with h5py.File(out, "r") as f:
        if n_rows:
            n_bp = int(np.sum(f["bp_n_parameters"][()] == 0))
            n_rp = int(np.sum(f["rp_n_parameters"][()] == 0))
    log.info("xp_continuous: %d of %d ids have XP spectra (%d without BP, %d without RP); "
             "%d without XP listed in %s", n_rows, n_requested, n_bp, n_rp, len(missing_ids), missing_out)
    return {"n_requested": n_requested, "n_with_xp": n_rows, "n_missing": int(len(missing_ids)),
            "missing_source_ids": missing_ids}


# ----------------------------------------------------------------------------- command lines
@dataclass(frozen=True)
class GaiaSettings:
    """config.yaml ``gaia:`` (defaults = the schema's)."""

    SECTION = "gaia"
    batch_size: int = MAX_IDS_PER_CALL  # ids per archive call (the archive allows at most 5000)
    max_retries: int = 5                # retries of a batch after a transient failure
    backoff_seconds: float = 2.0        # first back-off delay, doubled at every retry
    timeout_seconds: float = 600.0      # time-out of one archive call


def _parser(prog: str, description: str, xp: bool):
    p = stage_parser(prog, description)
    p.add_argument("--allstar", required=True, help="allStar FITS (only GAIAEDR3_SOURCE_ID is read)")
    p.add_argument("--archive", choices=("mock", "gaia"), required=True,
                   help="mock: the mock survey's archive; gaia: the real archive through astroquery")
    p.add_argument("--mock-archive", default=None,
                   help="the mock archive's manifest.json (beside gaia_source.h5, xp_continuous.h5)")
    p.add_argument("--cache-dir", required=True, help="directory of per-batch cache files (resume)")
    p.add_argument("--out", required=True, help="output HDF5 column table")
    if xp:
        p.add_argument("--missing", required=True, help="text file: ids the archive has no XP for")
        p.add_argument("--xp-format", choices=XP_FORMATS, default=None,
                       help="load_data format (default: the mock manifest's xp_format, else votable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_settings_argument(p, GaiaSettings)
    return p


def make_archive(args, settings: GaiaSettings) -> GaiaArchive:
    xp_format = getattr(args, "xp_format", None)
    if args.archive == "mock":
        if not args.mock_archive:
            raise StarfmInputError("--archive mock needs --mock-archive (its manifest.json)")
        from starfm.mock.archive import MockGaiaArchive  # the archive selection: nothing else here imports the mock

        return MockGaiaArchive(Path(args.mock_archive).parent, xp_format=xp_format)
    return AstroqueryGaiaArchive(timeout=settings.timeout_seconds, xp_format=xp_format or "votable")


def _run(args, func, **extra) -> int:
    settings = parse_settings(GaiaSettings, args.settings)
    ids = read_allstar_source_ids(args.allstar)
    archive = make_archive(args, settings)
    func(ids, archive, args.cache_dir, args.out, **extra, batch_size=settings.batch_size,
         max_retries=settings.max_retries, backoff=settings.backoff_seconds,
         progress=not args.no_progress)
    return 0


@run_cli
def cli_source(argv: Sequence[str] | None = None) -> int:
    args = _parser("gaia-source", "Query gaiadr3.gaia_source (parallax, photometry, ruwe, ...) for "
                   "every allStar GAIAEDR3_SOURCE_ID, in cached batches; a rerun resumes.",
                   xp=False).parse_args(argv)
    setup_logging(args.log, args.verbose)
    return _run(args, fetch_gaia_source)


@run_cli
def cli_xp(argv: Sequence[str] | None = None) -> int:
    args = _parser("gaia-xp", "Fetch Gaia DR3 XP continuous mean spectra (coefficients, errors, "
                   "n_relevant_bases, ...) for every allStar GAIAEDR3_SOURCE_ID with "
                   "Gaia.load_data, in cached batches; a rerun resumes.", xp=True).parse_args(argv)
    setup_logging(args.log, args.verbose)
    return _run(args, fetch_xp, missing_out=args.missing)
