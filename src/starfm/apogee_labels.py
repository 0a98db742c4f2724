"""APOGEE DR17 allStar + DistMass VAC -> one label row per Gaia DR3 source_id (SPEC §1.1-1.2).

What happens to the rows, in order:

1. allStar rows with ``EXTRATARG & 16`` (bit 4: a duplicate spectrum of a star that has a
   better one) are dropped, so one star can never land in both train and test.
2. DistMass is attached. It is believed row-aligned with allStar: if it has as many rows and
   APOGEE_ID agrees row by row, rows are paired as they stand ("aligned"); otherwise it is joined
   on APOGEE_ID ("join"). In the join, an APOGEE_ID listed several times in DistMass takes its
   first row (file order) whose mass and age are usable (finite, BITMASK bit 2 clear), else its
   first row; the number of such ids, and of those whose rows disagree, is logged. allStar rows
   with no DistMass row get NaN mass/age.
3. DistMass ages are converted to Gyr (``yr``: /1e9; ``log10yr``: 10**a/1e9 with
   err_Gyr = age_Gyr * ln(10) * err_dex); BITMASK bit value 2 (outside the covered parameter
   space) makes mass and age (and their errors) NaN.
4. Magnitudes J, H, K of 99.999 or NaN become NaN (with their errors). TEFF, LOGG, M_H, ALPHA_M
   and their errors are NaN where STARFLAG != 0 or ASPCAPFLAG has bit 19 or 23 set (ALPHA_M also
   bit 20, ALPHA_M_BAD), or where ASPCAP wrote its -9999 sentinel. Flagged stars are kept: a bad label is a missing token, not a lost star.
5. Rows without a Gaia match (GAIAEDR3_SOURCE_ID == 0) are dropped. If a source_id still occurs
   more than once, the row with the fewest flagged labels is kept, ties broken by the lowest
   allStar row index (deterministic), and the count is logged.

No cuts are applied here (the assembly stage owns them).
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from astropy.io import fits

from starfm.cli_common import json_object, run_cli, setup_logging, stage_parser
from starfm.errors import StarfmInputError, require_rows
from starfm.tables import write_table
from starfm.settings import add_settings_argument, parse_settings

log = logging.getLogger("starfm.labels")

ALLSTAR_COLUMNS = [
    "APOGEE_ID", "TELESCOPE", "FIELD", "RA", "DEC", "GLON", "GLAT",
    "J", "J_ERR", "H", "H_ERR", "K", "K_ERR",
    "STARFLAG", "ASPCAPFLAG", "EXTRATARG", "GAIAEDR3_SOURCE_ID",
    "TEFF", "TEFF_ERR", "LOGG", "LOGG_ERR", "M_H", "M_H_ERR", "ALPHA_M", "ALPHA_M_ERR",
]
DISTMASS_KEYS_REQUIRED = ("apogee_id", "mass", "mass_err", "age", "age_err")
DISTMASS_KEYS_OPTIONAL = ("bitmask",)
AGE_UNITS = ("yr", "Gyr", "log10yr")

EXTRATARG_DUPLICATE = 1 << 4        # bit 4: duplicate spectrum of the same star
ASPCAPFLAG_BAD = (1 << 19) | (1 << 23)   # bit 19 M_H_BAD, bit 23 STAR_BAD
ASPCAPFLAG_ALPHA_M_BAD = 1 << 20         # bit 20 ALPHA_M_BAD (DR17 ASPCAPFLAG)
DISTMASS_OUTSIDE_GRID = 2           # BITMASK bit value 2: outside the covered parameter space
BAD_MAG = 99.0                      # 2MASS "no measurement" is 99.999; anything above 99 is bad
ASPCAP_SENTINEL = -9998.0           # ASPCAP writes -9999 for "no value"; at or below this is bad

LABELS = ("TEFF", "LOGG", "M_H")      # the labels whose flags choose between repeated source_ids
# [alpha/M] (the alpha_m token): NaN where the star is flagged as for LABELS or ALPHA_M_BAD is set
EXTRA_LABELS = {"ALPHA_M": ASPCAPFLAG_ALPHA_M_BAD}
MAGS = ("J", "H", "K")


# ---------------------------------------------------------------- reading FITS tables

def read_fits_columns(path: str | Path, columns: Iterable[str], hdu: int = 1,
                      what: str = "FITS table") -> dict[str, np.ndarray]:
    """Read only ``columns`` of binary-table HDU ``hdu`` of a (possibly huge) FITS file.

    The file is memory-mapped, so only the requested columns are copied into memory (native
    byte order; text columns as stripped ``str``). Column names match case-insensitively and
    the returned dict is keyed by the names asked for. A missing or corrupt file, a file
    without that table, or missing columns raise :class:`StarfmInputError` naming the file.
    """
    path = Path(path)
    columns = list(columns)
    if not path.exists():
        raise StarfmInputError(f"{path}: {what} not found")
    try:
        with fits.open(path, memmap=True, lazy_load_hdus=True) as hdul:
            try:
                table = hdul[hdu]
            except (IndexError, KeyError) as exc:
                raise StarfmInputError(f"{path}: {what} has no HDU {hdu} (truncated, or not a "
                                       f"FITS table file?)") from exc
            if not isinstance(table, (fits.BinTableHDU, fits.TableHDU)):
                raise StarfmInputError(f"{path}: HDU {hdu} is a {type(table).__name__}, "
                                       f"not the {what}")
            available = list(table.columns.names)
            by_upper = {name.upper(): name for name in available}
            missing = [c for c in columns if c.upper() not in by_upper]
            if missing:
                raise StarfmInputError(f"{path}: {what} is missing column(s) {missing}; "
                                       f"the file has {sorted(available)}")
            data = table.data
            if data is None:
                return {c: np.empty(0) for c in columns}
            out = {}
            for c in columns:
                out[c] = _native(data.field(by_upper[c.upper()]))
            return out
    except StarfmInputError:
        raise
    except (OSError, ValueError, TypeError, IndexError, EOFError) as exc:
        raise StarfmInputError(f"{path}: not a readable {what} ({type(exc).__name__}: {exc})") from exc


def _native(column) -> np.ndarray:
    """A copy of one FITS column in native byte order; text as stripped ``str``."""
    arr = np.asarray(column)
    if arr.dtype.kind in "SU":
        if arr.dtype.kind == "S":
            arr = np.char.decode(arr, "ascii", errors="replace")
        return np.char.strip(arr.astype(str))
    return arr.astype(arr.dtype.newbyteorder("="), copy=True)


def read_allstar(path: str | Path, columns: Iterable[str] = ALLSTAR_COLUMNS) -> dict[str, np.ndarray]:
    """The named columns of an APOGEE allStar file (HDU 1) as ``name -> numpy array``.

    Memory-efficient on the 4 GB DR17 file: only the columns asked for are read.
    """
    return read_fits_columns(path, columns, hdu=1, what="allStar file")


# ---------------------------------------------------------------- settings
@dataclass(frozen=True)
class DistMassColumns:
    """config.yaml ``apogee.distmass_columns``: the DistMass VAC's column names."""

    SECTION = "apogee.distmass_columns"
    apogee_id: str = "APOGEE_ID"
    mass: str = "MASS"
    mass_err: str = "MASS_ERR"
    age: str = "AGE"
    age_err: str = "AGE_ERR"
    bitmask: str = "BITMASK"          # "" = the file has no bitmask


@dataclass(frozen=True)
class ApogeeSettings:
    """config.yaml ``apogee:`` (defaults = the schema's). The labels stage reads the DistMass
    columns and age unit; the URLs and local paths choose the files the rules hand it."""

    SECTION = "apogee"
    allstar_url: str = ("https://data.sdss.org/sas/dr17/apogee/spectro/aspcap/dr17/synspec_rev1/"
                        "allStar-dr17-synspec_rev1.fits")
    distmass_url: str = ("https://data.sdss.org/sas/dr17/apogee/vac/apogee-distmass/"
                         "APOGEE_DistMass-DR17_v1.6.1.fits")
    allstar_path: str = ""
    distmass_path: str = ""
    distmass_columns: DistMassColumns = field(default_factory=DistMassColumns)
    distmass_age_unit: str = "yr"


# ---------------------------------------------------------------- the pieces of the stage

def parse_distmass_columns(spec: str | Mapping[str, str]) -> dict[str, str | None]:
    """Validate the DistMass column mapping (JSON text or a dict)."""
    spec = json_object(dict(spec) if isinstance(spec, Mapping) else spec, "apogee.distmass_columns")
    known = DISTMASS_KEYS_REQUIRED + DISTMASS_KEYS_OPTIONAL
    unknown = sorted(set(spec) - set(known))
    missing = [k for k in DISTMASS_KEYS_REQUIRED if not spec.get(k)]
    if unknown or missing:
        raise StarfmInputError(f"apogee.distmass_columns: unknown key(s) {unknown}, missing key(s) "
                               f"{missing}; expected keys {list(known)}")
    return {k: (spec.get(k) or None) for k in known}


def _bad_float(values: np.ndarray) -> np.ndarray:
    """Missing value: NaN/inf or ASPCAP's -9999 sentinel."""
    values = np.asarray(values, dtype=float)
    return ~np.isfinite(values) | (values <= ASPCAP_SENTINEL)


def _bad_mag(values: np.ndarray) -> np.ndarray:
    """Missing 2MASS magnitude or error: NaN or 99.999 (anything above 99)."""
    values = np.asarray(values, dtype=float)
    return _bad_float(values) | (values > BAD_MAG)


def _check_not_all_missing(cols: Mapping[str, np.ndarray], names: Iterable[str], source: str) -> None:
    for name in names:
        if len(cols[name]) and _bad_float(cols[name]).all():
            raise StarfmInputError(f"{source}: column {name} has no valid value (all NaN "
                                   f"or -9999); wrong column or corrupt file?")


def age_to_gyr(age: np.ndarray, age_err: np.ndarray, unit: str) -> tuple[np.ndarray, np.ndarray]:
    """DistMass age (and error) in ``unit`` -> Gyr. log10(yr) errors are propagated linearly."""
    age = np.asarray(age, dtype=float)
    age_err = np.asarray(age_err, dtype=float)
    if unit == "yr":
        return age / 1e9, age_err / 1e9
    if unit == "Gyr":
        return age.copy(), age_err.copy()
    if unit == "log10yr":
        age_gyr = 10.0 ** (age - 9.0)
        return age_gyr, age_gyr * np.log(10.0) * age_err
    raise StarfmInputError(f"apogee.distmass_age_unit: unknown unit {unit!r}; expected one of {list(AGE_UNITS)}")


def match_distmass(allstar_ids: np.ndarray, dm_ids: np.ndarray, dm_usable: np.ndarray,
                   dm_values: np.ndarray) -> tuple[np.ndarray, str, dict]:
    """Index into DistMass for every allStar row (-1: no DistMass row), and the path taken.

    ``dm_usable`` marks DistMass rows with usable mass and age; ``dm_values`` (n_dm, k) is only
    used to count duplicated ids whose rows disagree.
    """
    allstar_ids = np.asarray(allstar_ids).astype(str)
    dm_ids = np.asarray(dm_ids).astype(str)
    stats = {"n_distmass_duplicate_ids": 0, "n_distmass_conflicting_ids": 0}
    if len(dm_ids) == len(allstar_ids) and np.array_equal(dm_ids, allstar_ids):
        return np.arange(len(allstar_ids)), "aligned", stats
    # Join: one DistMass row per id: first usable row in file order, else first row.
    order = np.lexsort((np.arange(len(dm_ids)), ~dm_usable, dm_ids))
    sorted_ids = dm_ids[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = sorted_ids[1:] != sorted_ids[:-1]
    group = np.cumsum(first) - 1
    counts = np.bincount(group) if len(group) else np.zeros(0, int)
    stats["n_distmass_duplicate_ids"] = int((counts > 1).sum())
    if stats["n_distmass_duplicate_ids"]:
        vals = np.asarray(dm_values, dtype=float)[order]
        ref = vals[first][group]
        differs = ~((vals == ref) | (np.isnan(vals) & np.isnan(ref))).all(axis=1)
        stats["n_distmass_conflicting_ids"] = int(np.unique(group[differs]).size)
    unique_ids = sorted_ids[first]
    chosen = order[first]
    index = np.full(len(allstar_ids), -1, dtype=np.int64)
    if len(unique_ids):
        pos = np.clip(np.searchsorted(unique_ids, allstar_ids), 0, len(unique_ids) - 1)
        found = unique_ids[pos] == allstar_ids
        index[found] = chosen[pos[found]]
    return index, "join", stats


# ---------------------------------------------------------------- the stage

def build_labels(allstar_path: str | Path, distmass_path: str | Path,
                 distmass_columns: str | Mapping[str, str], age_unit: str = "yr"
                 ) -> tuple[dict[str, np.ndarray], dict]:
    """allStar + DistMass -> label table (see the module docstring) and a dict of counts."""
    allstar_path, distmass_path = Path(allstar_path), Path(distmass_path)
    names = parse_distmass_columns(distmass_columns)
    if age_unit not in AGE_UNITS:
        raise StarfmInputError(f"apogee.distmass_age_unit: unknown unit {age_unit!r}; expected one of {list(AGE_UNITS)}")

    star = read_allstar(allstar_path)
    n_allstar = len(star["APOGEE_ID"])
    require_rows(n_allstar, f"{allstar_path} (allStar)")
    _check_not_all_missing(star, ["RA", "DEC", "GLON", "GLAT", "TEFF", "LOGG", "M_H"],
                           f"{allstar_path} (allStar)")

    dm_cols = [c for c in names.values() if c]
    dm_raw = read_fits_columns(distmass_path, dm_cols, what="DistMass file")
    require_rows(len(dm_raw[names["apogee_id"]]), f"{distmass_path} (DistMass)")
    _check_not_all_missing(dm_raw, [names["mass"], names["age"]], f"{distmass_path} (DistMass)")

    # DistMass values in physical units, NaN where unusable.
    dm_mass = np.asarray(dm_raw[names["mass"]], dtype=float)
    dm_mass_err = np.asarray(dm_raw[names["mass_err"]], dtype=float)
    age_raw = np.asarray(dm_raw[names["age"]], dtype=float)
    age_err_raw = np.asarray(dm_raw[names["age_err"]], dtype=float)
    bad_age = _bad_float(age_raw)
    dm_age, dm_age_err = age_to_gyr(age_raw, age_err_raw, age_unit)
    dm_age[bad_age] = np.nan
    dm_age_err[bad_age | _bad_float(age_err_raw)] = np.nan
    dm_mass[_bad_float(dm_mass)] = np.nan
    dm_mass_err[_bad_float(dm_mass_err)] = np.nan
    outside = np.zeros(len(dm_mass), dtype=bool)
    if names["bitmask"]:
        bitmask = np.asarray(dm_raw[names["bitmask"]])
        if bitmask.dtype.kind == "f":   # a float bitmask column: NaN means no flag
            bitmask = np.nan_to_num(bitmask, nan=0).astype(np.int64)
        outside = (bitmask.astype(np.int64) & DISTMASS_OUTSIDE_GRID) != 0
    else:
        log.warning("no DistMass bitmask column configured: BITMASK bit 2 not applied")
    for arr in (dm_mass, dm_mass_err, dm_age, dm_age_err):
        arr[outside] = np.nan
    _check_units(dm_mass, dm_age, age_unit, distmass_path)

    usable = np.isfinite(dm_mass) & np.isfinite(dm_age)
    index, path_taken, stats = match_distmass(
        star["APOGEE_ID"], dm_raw[names["apogee_id"]], usable,
        np.column_stack([dm_mass, dm_mass_err, dm_age, dm_age_err]))
    has_dm = index >= 0
    idx = np.where(has_dm, index, 0)

    def take(values):
        out = np.full(n_allstar, np.nan)
        if len(values):
            out[has_dm] = values[idx[has_dm]]
        return out

    table = {
        "source_id": np.asarray(star["GAIAEDR3_SOURCE_ID"]).astype(np.int64),
        "apogee_id": star["APOGEE_ID"].astype(str),
        "glon": np.asarray(star["GLON"], dtype=float),
        "glat": np.asarray(star["GLAT"], dtype=float),
    }
    for mag in MAGS:
        value = np.asarray(star[mag], dtype=float)
        err = np.asarray(star[f"{mag}_ERR"], dtype=float)
        bad = _bad_mag(value)
        table[mag.lower()] = np.where(bad, np.nan, value)
        table[f"{mag.lower()}_err"] = np.where(bad | _bad_mag(err), np.nan, err)

    flagged = (np.asarray(star["STARFLAG"]).astype(np.int64) != 0) | (
        (np.asarray(star["ASPCAPFLAG"]).astype(np.int64) & ASPCAPFLAG_BAD) != 0)
    n_bad_labels = np.zeros(n_allstar, dtype=int)
    for label in LABELS:
        value = np.asarray(star[label], dtype=float)
        err = np.asarray(star[f"{label}_ERR"], dtype=float)
        bad = flagged | _bad_float(value)
        n_bad_labels += bad
        table[label.lower()] = np.where(bad, np.nan, value)
        table[f"{label.lower()}_err"] = np.where(bad | _bad_float(err), np.nan, err)
    aspcapflag = np.asarray(star["ASPCAPFLAG"]).astype(np.int64)
    for label, bit in EXTRA_LABELS.items():
        value = np.asarray(star[label], dtype=float)
        err = np.asarray(star[f"{label}_ERR"], dtype=float)
        bad = flagged | ((aspcapflag & bit) != 0) | _bad_float(value)
        table[label.lower()] = np.where(bad, np.nan, value)
        table[f"{label.lower()}_err"] = np.where(bad | _bad_float(err), np.nan, err)
    table["mass"], table["mass_err"] = take(dm_mass), take(dm_mass_err)
    table["age_gyr"], table["age_gyr_err"] = take(dm_age), take(dm_age_err)

    # Row selection: duplicate spectra, unmatched Gaia ids, repeated source_ids.
    duplicate_spectrum = (np.asarray(star["EXTRATARG"]).astype(np.int64) & EXTRATARG_DUPLICATE) != 0
    no_gaia = table["source_id"] == 0
    keep = ~duplicate_spectrum & ~no_gaia
    rows = np.flatnonzero(keep)
    order = np.lexsort((rows, n_bad_labels[rows], table["source_id"][rows]))
    rows = rows[order]
    sid = table["source_id"][rows]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = sid[1:] != sid[:-1]
    n_repeated = int((~first).sum())
    rows = np.sort(rows[first])      # back to allStar order
    out = {name: col[rows] for name, col in table.items()}

    counts = {
        "n_allstar": n_allstar, "distmass_match": path_taken,
        "n_distmass_rows": int(len(dm_mass)),
        "n_without_distmass_row": int((~has_dm).sum()),
        "n_distmass_outside_grid": int(outside.sum()),
        "n_duplicate_spectra_dropped": int(duplicate_spectrum.sum()),
        "n_no_source_id_dropped": int((no_gaia & ~duplicate_spectrum).sum()),
        "n_repeated_source_id_dropped": n_repeated,
        "n_labels_flagged": int(flagged[rows].sum()),
        "n_rows": int(len(rows)),
        "age_unit_in": age_unit, **stats,
    }
    log.info("DistMass matched to allStar by %s (%d DistMass rows, %d allStar rows without one)",
             "row-aligned APOGEE_IDs" if path_taken == "aligned" else "a join on APOGEE_ID",
             counts["n_distmass_rows"], counts["n_without_distmass_row"])
    if path_taken == "join":
        log.info("DistMass ids listed more than once: %d (%d with differing values; the first "
                 "usable row of each was taken)", stats["n_distmass_duplicate_ids"],
                 stats["n_distmass_conflicting_ids"])
    log.info("DistMass BITMASK bit 2 (outside grid): %d rows -> mass/age NaN", counts["n_distmass_outside_grid"])
    log.info("dropped %d duplicate spectra (EXTRATARG bit 4), %d rows with GAIAEDR3_SOURCE_ID 0, "
             "%d repeated source_ids (kept the row with fewest flagged labels, then lowest index)",
             counts["n_duplicate_spectra_dropped"], counts["n_no_source_id_dropped"], n_repeated)
    log.info("%d rows out; %d with labels NaN by STARFLAG/ASPCAPFLAG", len(rows), counts["n_labels_flagged"])
    if len(rows) == 0:
        raise StarfmInputError(f"{allstar_path}: no row left after dropping duplicate spectra and "
                               f"rows without a Gaia source_id")
    return out, counts


def _check_units(mass: np.ndarray, age_gyr: np.ndarray, age_unit: str, source: Path) -> None:
    """Catch a wrong apogee.distmass_age_unit or wrong column early: typical giants are ~1 Msun, ~1-14 Gyr."""
    med_mass = np.nanmedian(mass) if np.isfinite(mass).any() else np.nan
    med_age = np.nanmedian(age_gyr) if np.isfinite(age_gyr).any() else np.nan
    if np.isfinite(med_mass) and not 0.05 < med_mass < 50:
        raise StarfmInputError(f"{source}: median DistMass mass {med_mass:.3g} is not in Msun "
                               f"(expected ~0.5-4); check apogee.distmass_columns")
    if np.isfinite(med_age) and not 0.01 < med_age < 100:
        raise StarfmInputError(f"{source}: median DistMass age {med_age:.3g} Gyr after reading it "
                               f"as {age_unit!r}; the setting apogee.distmass_age_unit looks wrong (yr | Gyr | log10yr)")


def make_labels(allstar: str | Path, distmass: str | Path, distmass_columns: str | Mapping[str, str],
                age_unit: str, out: str | Path) -> dict:
    """The stage: build the label table and write it to ``out`` (HDF5, atomically)."""
    table, counts = build_labels(allstar, distmass, distmass_columns, age_unit)
    attrs = dict(counts, age_unit="Gyr", mass_unit="Msun", allstar=str(allstar), distmass=str(distmass))
    write_table(out, table, attrs=attrs)
    log.info("wrote %s", out)
    return counts


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("labels", "Join APOGEE DR17 allStar with the DistMass VAC, NaN flagged "
                          "labels, drop duplicate spectra; one row per Gaia DR3 source_id. The "
                          "DistMass column names and age unit come from --settings.")
    parser.add_argument("--allstar", required=True, help="allStar-dr17-synspec_rev1.fits")
    parser.add_argument("--distmass", required=True, help="APOGEE_DistMass-DR17_v1.6.1.fits")
    parser.add_argument("--out", required=True, help="output label table (HDF5)")
    add_settings_argument(parser, ApogeeSettings)
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    s = parse_settings(ApogeeSettings, args.settings)
    make_labels(args.allstar, args.distmass, asdict(s.distmass_columns), s.distmass_age_unit,
                args.out)
    return 0
