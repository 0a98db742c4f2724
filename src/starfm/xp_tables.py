"""Parse Gaia DR3 XP continuous-spectrum and gaia_source tables in every format the archive serves.

``astroquery.gaia.Gaia.load_data(..., retrieval_type='XP_CONTINUOUS', data_structure='RAW')``
returns ``{file name: [table, ...]}`` whose array cells differ by format: VOTable gives
object columns of (masked) arrays (``votable.parse(...).iter_tables()``: ``TableElement``s, not
``Table``s), FITS gives variable-length columns (empty arrays for a missing band), CSV gives text
``"(v1, v2, ...)"`` and ECSV JSON text ``"[v1, ...]"``. Other copies of the same data hold fixed
``(n, 55)`` arrays or one column per coefficient (``bp_coeff_0`` ... ``e_bp_coeff_54``).
:func:`parse_xp_tables` turns any of these into the ``xp_continuous.h5`` columns; a missing band
(masked, empty or null cells) becomes NaN coefficients with ``n_relevant_bases`` and
``n_parameters`` 0. The correlations are never parsed: the pipeline does not use them.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

import numpy as np
from astropy.table import Table

from starfm.errors import StarfmInputError
from starfm.tokens import N_XP

log = logging.getLogger(__name__)

N_COEFFICIENTS = N_XP  # coefficients per band (the XP tokens are one per coefficient)
BANDS = ("bp", "rp")

# xp_continuous.h5 columns and their dtypes (archive dtypes for the scalars)
XP_OUTPUT_DTYPES: dict[str, np.dtype] = {"source_id": np.dtype("int64")}
for _b in BANDS:
    XP_OUTPUT_DTYPES.update({
        f"{_b}_coefficients": np.dtype("float64"),
        f"{_b}_coefficient_errors": np.dtype("float32"),
        f"{_b}_n_relevant_bases": np.dtype("int16"),
        f"{_b}_n_parameters": np.dtype("int16"),
        f"{_b}_standard_deviation": np.dtype("float32"),
    })
XP_COLUMNS = tuple(XP_OUTPUT_DTYPES)
XP_ARRAY_COLUMNS = tuple(c for c in XP_COLUMNS if c.endswith(("coefficients", "coefficient_errors")))

# gaia_source.h5 columns, archive dtypes and units (mas, mag, 1/um, deg)
GAIA_SOURCE_DTYPES: dict[str, np.dtype] = {
    "source_id": np.dtype("int64"),
    "parallax": np.dtype("float64"),
    "parallax_error": np.dtype("float32"),
    "phot_g_mean_mag": np.dtype("float32"),
    "bp_rp": np.dtype("float32"),
    "phot_bp_rp_excess_factor": np.dtype("float32"),
    "ruwe": np.dtype("float32"),
    "nu_eff_used_in_astrometry": np.dtype("float32"),
    "pseudocolour": np.dtype("float32"),
    "ecl_lat": np.dtype("float64"),
    "astrometric_params_solved": np.dtype("int16"),
}
GAIA_SOURCE_COLUMNS = tuple(GAIA_SOURCE_DTYPES)


# ----------------------------------------------------------------------------- inputs
def as_tables(obj: Any, prefix: str | None = None) -> list[Table]:
    """Flatten a Table / VOTable ``TableElement`` / list / ``load_data`` dict into Tables.

    From a dict, only the values whose key starts with ``prefix`` are used when any does
    (``load_data(retrieval_type='ALL')`` also returns XP_SAMPLED, MCMC, ... files).
    """
    if isinstance(obj, Table):
        return [obj]
    if hasattr(obj, "to_table") and callable(obj.to_table):  # astropy.io.votable TableElement
        return [obj.to_table()]
    if isinstance(obj, Mapping):
        if "metadata" in obj and "data" in obj:  # TAP JSON (metadata + data rows)
            return [_tap_json_table(obj)]
        keys = list(obj)
        if prefix is not None and any(str(k).startswith(prefix) for k in keys):
            keys = [k for k in keys if str(k).startswith(prefix)]
        out: list[Table] = []
        for k in keys:
            value = obj[k]
            if isinstance(value, (str, bytes)):
                raise StarfmInputError(
                    f"archive product '{k}' was not parsed (astroquery returns a path for this "
                    "format); use votable, fits or csv")
            out += as_tables(value)
        return out
    if isinstance(obj, (list, tuple)):
        out = []
        for item in obj:
            out += as_tables(item)
        return out
    raise StarfmInputError(f"cannot read an XP/gaia_source table from a {type(obj).__name__}")


def _tap_json_table(obj: Mapping) -> Table:
    names = [m["name"] for m in obj["metadata"]]
    rows = obj["data"]
    cols = {}
    for j, name in enumerate(names):
        values = [r[j] for r in rows]
        mask = np.array([v is None for v in values], dtype=bool)
        filled = [0 if v is None else v for v in values]
        cols[name] = np.ma.MaskedArray(np.asarray(filled), mask=mask) if mask.any() else np.asarray(filled)
    return Table(cols, names=names, masked=False)


def _lower_names(t: Table) -> dict[str, Any]:
    """Column name (lower case) -> column; ``SOURCE_ID`` and ``source_id`` are the same."""
    return {name.lower(): t[name] for name in t.colnames}


# ----------------------------------------------------------------------------- cell parsing
def _text_valid(text: np.ndarray, mask) -> np.ndarray:
    """Text cells holding an array: not masked, not empty, not a null token like "()"."""
    valid = ~np.asarray(mask, bool) & (np.char.str_len(text) > 0)
    short = np.flatnonzero(valid & (np.char.str_len(text) <= 8))  # only short cells can be null tokens
    if short.size:
        tokens = np.char.lower(np.char.strip(text[short]))
        valid[short[np.isin(tokens, ["", "()", "[]", "( )", "null", "nan", "--"])]] = False
    return valid


def _text_cells_to_array(cells: np.ndarray, valid: np.ndarray, dtype, source: str) -> np.ndarray:
    """Text cells "(v1, v2, ...)" / "[v1, ...]" -> (n, 55) array, NaN rows where not valid.

    One join and one ``np.fromstring`` over all cells: no Python float() per value.
    """
    n = len(cells)
    out = np.full((n, N_COEFFICIENTS), np.nan, dtype=dtype)
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return out
    text = cells[idx]
    counts = np.char.count(text, ",") + 1
    joined = ",".join(text.tolist())
    joined = joined.translate(str.maketrans("()[]", "    ")).replace("null", "nan")
    try:
        values = np.fromstring(joined, dtype=np.float64, sep=",")
    except ValueError:
        values = np.zeros(0)
    if values.size != counts.sum():
        raise StarfmInputError(f"{source}: unparsable array text cells "
                               f"(read {values.size} numbers, expected {counts.sum()})")
    _place_ragged(out, idx, values, counts, source)
    return out


def _place_ragged(out: np.ndarray, idx: np.ndarray, values: np.ndarray, counts: np.ndarray,
                  source: str) -> None:
    """Put concatenated per-row ``values`` (``counts`` each) into rows ``idx`` of ``out``."""
    if np.any(counts > N_COEFFICIENTS):
        raise StarfmInputError(f"{source}: array cells with {counts.max()} > {N_COEFFICIENTS} values")
    if np.all(counts == N_COEFFICIENTS):
        out[idx] = values.reshape(-1, N_COEFFICIENTS)
        return
    # shorter arrays (fewer parameters): pad with NaN
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    row = np.repeat(np.arange(len(idx)), counts)
    col = np.arange(values.size) - np.repeat(starts, counts)
    out[idx[row], col] = values


def _object_cells_to_array(col, dtype, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Object column of arrays (FITS variable-length, VOTable arraysize='*', ECSV) -> (n, 55).

    Returns the array (NaN where absent) and a bool ``present`` per row.
    """
    cells = list(np.asarray(col, dtype=object))
    n = len(cells)
    row_mask = np.zeros(n, bool)
    if hasattr(col, "mask") and np.ndim(col.mask) == 1:
        row_mask = np.asarray(col.mask, bool)
    counts = np.fromiter((np.size(c) if c is not None and c is not np.ma.masked else 0 for c in cells),
                         dtype=np.int64, count=n)
    present = (counts > 0) & ~row_mask
    out = np.full((n, N_COEFFICIENTS), np.nan, dtype=dtype)
    idx = np.flatnonzero(present)
    if idx.size:
        chosen = [cells[i] for i in idx]
        if any(isinstance(c, np.ma.MaskedArray) for c in chosen):
            values = np.ma.filled(np.ma.concatenate(chosen).astype(np.float64), np.nan)
        else:
            values = np.concatenate(chosen).astype(np.float64)
        _place_ragged(out, idx, values, counts[idx], source)
    return out, present


def _array_column(cols: Mapping[str, Any], band: str, field: str, dtype, n: int,
                  source: str) -> tuple[np.ndarray, np.ndarray] | None:
    """One band's coefficient (or error) array in any representation; None if absent."""
    name = f"{band}_{field}"
    if name in cols:
        col = cols[name]
        data = col.data if hasattr(col, "data") else np.asarray(col)
        if np.ndim(col) == 2:  # fixed-size arrays (VOTable arraysize="55", npz-like tables)
            arr = np.ma.filled(np.ma.asarray(col, dtype=np.float64), np.nan)
            out = np.full((n, N_COEFFICIENTS), np.nan, dtype=dtype)
            out[:, :arr.shape[1]] = arr
            return out, ~np.all(np.isnan(arr), axis=1)
        kind = np.asarray(data).dtype.kind
        if kind in "US":  # CSV / ECSV text cells
            text = np.asarray(data)
            if kind == "S":
                text = np.char.decode(text, "utf-8")
            valid = _text_valid(text, np.ma.getmaskarray(col))
            return _text_cells_to_array(text, valid, dtype, source), valid
        if kind == "O":
            if any(isinstance(c, (str, bytes)) for c in np.asarray(data)):  # object column of text
                mask = np.asarray(np.ma.getmaskarray(col), bool)
                text = np.array(["" if (m or c is None) else (c.decode() if isinstance(c, bytes) else c)
                                 for c, m in zip(np.asarray(data), mask)], dtype=str)
                valid = _text_valid(text, mask)
                return _text_cells_to_array(text, valid, dtype, source), valid
            return _object_cells_to_array(col, dtype, source)
        if np.all(np.ma.getmaskarray(col)):  # every cell empty: a text reader guessed a number type
            return np.full((n, N_COEFFICIENTS), np.nan, dtype=dtype), np.zeros(n, bool)
        raise StarfmInputError(f"{source}: column {name} has unexpected dtype {data.dtype}")
    # one column per coefficient: bp_coeff_0..54 / e_bp_coeff_0..54
    prefix = {"coefficients": f"{band}_coeff_", "coefficient_errors": f"e_{band}_coeff_"}[field]
    if f"{prefix}0" in cols:
        k = sum(1 for i in range(N_COEFFICIENTS) if f"{prefix}{i}" in cols)
        arr = np.full((n, N_COEFFICIENTS), np.nan, dtype=dtype)
        for i in range(k):  # loop over the 55 coefficients, not over stars
            arr[:, i] = np.ma.filled(np.ma.asarray(cols[f"{prefix}{i}"], dtype=np.float64), np.nan)
        return arr, ~np.all(np.isnan(arr), axis=1)
    return None


def _scalar_column(cols: Mapping[str, Any], name: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(float64 values with NaN for null, present mask) or None when the column is absent."""
    if name not in cols:
        return None
    col = cols[name]
    arr = np.ma.asarray(col)
    if arr.dtype.kind in "US":
        text = np.char.strip(np.ma.filled(arr, "").astype(str))
        ok = (text != "") & (np.char.lower(text) != "null")
        vals = np.full(n, np.nan)
        vals[ok] = text[ok].astype(np.float64)
        return vals, ok
    if arr.dtype.kind == "O":
        vals = np.array([np.nan if v is None or v is np.ma.masked else float(v)
                         for v in np.ma.filled(arr, None)], dtype=np.float64)
    else:
        vals = np.ma.filled(arr.astype(np.float64), np.nan)
    return vals, ~np.isnan(vals)


# ----------------------------------------------------------------------------- XP
def parse_xp_table(table: Table, source: str = "XP table") -> dict[str, np.ndarray]:
    """One archive-style XP table -> ``xp_continuous.h5`` columns (row order kept)."""
    cols = _lower_names(table)
    n = len(table)
    if "source_id" not in cols:
        raise StarfmInputError(f"{source}: no source_id column; it has {sorted(cols)}")
    sid = np.ma.asarray(cols["source_id"])
    if np.ma.is_masked(sid):
        raise StarfmInputError(f"{source}: null source_id")
    out: dict[str, np.ndarray] = {"source_id": np.asarray(sid, dtype=np.int64)}
    absent_fields: set[str] = set()
    for band in BANDS:
        got = _array_column(cols, band, "coefficients", np.float64, n, source)
        if got is None:
            raise StarfmInputError(f"{source}: no {band}_coefficients column; it has {sorted(cols)}")
        coef, present = got
        present = present & ~np.all(np.isnan(coef), axis=1)
        got = _array_column(cols, band, "coefficient_errors", np.float32, n, source)
        if got is None:
            absent_fields.add("coefficient_errors")
            err = np.full((n, N_COEFFICIENTS), np.nan, np.float32)
        else:
            err = got[0]
        n_par = _scalar_column(cols, f"{band}_n_parameters", n)
        if n_par is None:  # not in the file: count the coefficients given
            absent_fields.add("n_parameters")
            n_par_v = np.sum(~np.isnan(coef), axis=1).astype(np.float64)
        else:
            n_par_v = n_par[0]
            present &= ~(n_par[1] & (n_par_v == 0))
        n_rel = _scalar_column(cols, f"{band}_n_relevant_bases", n)
        if n_rel is None:  # not in the file: no truncation information, keep every basis
            absent_fields.add("n_relevant_bases")
            n_rel_v = n_par_v.copy()
        else:
            n_rel_v = n_rel[0]
        std = _scalar_column(cols, f"{band}_standard_deviation", n)
        if std is None:
            absent_fields.add("standard_deviation")
            std_v = np.full(n, np.nan)
        else:
            std_v = std[0]
        # a missing band: NaN arrays, counts 0, NaN standard deviation
        coef[~present] = np.nan
        err[~present] = np.nan
        n_par_v = np.where(present, np.nan_to_num(n_par_v, nan=0.0), 0.0)
        n_rel_v = np.where(present, np.nan_to_num(n_rel_v, nan=0.0), 0.0)
        std_v = np.where(present, std_v, np.nan)
        out[f"{band}_coefficients"] = coef.astype(np.float64)
        out[f"{band}_coefficient_errors"] = err.astype(np.float32)
        out[f"{band}_n_relevant_bases"] = n_rel_v.astype(np.int16)
        out[f"{band}_n_parameters"] = n_par_v.astype(np.int16)
        out[f"{band}_standard_deviation"] = std_v.astype(np.float32)
    if absent_fields:
        log.debug("%s: no %s columns (filled: errors/std NaN, counts from the coefficients)",
                  source, sorted(absent_fields))
    return {k: out[k] for k in XP_COLUMNS}


def empty_xp_columns() -> dict[str, np.ndarray]:
    return {k: np.zeros((0, N_COEFFICIENTS) if k in XP_ARRAY_COLUMNS else 0, dtype=dt)
            for k, dt in XP_OUTPUT_DTYPES.items()}


def parse_xp_tables(obj: Any, source: str = "XP tables") -> dict[str, np.ndarray]:
    """Table, list of Tables or a ``load_data`` dict -> ``xp_continuous.h5`` columns.

    Rows are reconciled on source_id (a star split over two tables, one with BP and one with
    RP, becomes one row) and sorted by source_id.
    """
    tables = as_tables(obj, prefix="XP_CONTINUOUS")
    parts = [parse_xp_table(t, source) for t in tables if len(t)]
    if not parts:
        return empty_xp_columns()
    cols = {k: np.concatenate([p[k] for p in parts]) for k in XP_COLUMNS}
    return reconcile_bands(cols)


def reconcile_bands(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per source_id, sorted; each band taken from a row that has it."""
    sid = cols["source_id"]
    uniq, first = np.unique(sid, return_index=True)
    if len(uniq) == len(sid):
        return {k: v[first] for k, v in cols.items()}
    out = {"source_id": uniq}
    for band in BANDS:
        missing = cols[f"{band}_n_parameters"] == 0
        order = np.lexsort((missing, sid))  # per id, rows having the band first
        pick = order[np.searchsorted(sid[order], uniq)]
        for k in XP_COLUMNS:
            if k.startswith(band + "_"):
                out[k] = cols[k][pick]
    return {k: out[k] for k in XP_COLUMNS}


# ----------------------------------------------------------------------------- gaia_source
def parse_gaia_source(obj: Any, source: str = "gaia_source table") -> dict[str, np.ndarray]:
    """gaia_source rows (Table, VOTable, list, TAP JSON dict) -> the kept columns, archive units.

    Null floats become NaN; a null ``astrometric_params_solved`` becomes 0 (unknown: the
    zero-point stage treats anything but 31/95 as "no correction").
    """
    tables = as_tables(obj)
    parts = []
    for t in tables:
        cols = _lower_names(t)
        missing = [c for c in GAIA_SOURCE_COLUMNS if c not in cols]
        if missing:
            raise StarfmInputError(f"{source}: missing column(s) {missing}; it has {sorted(cols)}")
        n = len(t)
        part = {}
        for name, dtype in GAIA_SOURCE_DTYPES.items():
            vals, _ = _scalar_column(cols, name, n)
            if name == "source_id":
                if np.isnan(vals).any():
                    raise StarfmInputError(f"{source}: null source_id")
                vals = np.asarray(np.ma.filled(np.ma.asarray(cols[name]), 0)).astype(np.int64)
            elif dtype.kind in "iu":
                vals = np.nan_to_num(vals, nan=0.0)
            part[name] = np.asarray(vals).astype(dtype)
        parts.append(part)
    if not parts:
        return {k: np.zeros(0, dt) for k, dt in GAIA_SOURCE_DTYPES.items()}
    return {k: np.concatenate([p[k] for p in parts]) for k in GAIA_SOURCE_COLUMNS}


def read_tap_json(path) -> dict:
    """A TAP JSON result file (``metadata`` + ``data``) as a dict :func:`parse_gaia_source` reads."""
    with open(path) as f:
        return json.load(f)


def relevant_bases(coef: np.ndarray, err: np.ndarray, threshold: float = 3.0) -> np.ndarray:
    """1 + index of the last coefficient with |c_k| / err_k > ``threshold`` (0 when none): the
    archive's n_relevant_bases, reproduced on real DR3 sources to a median of 1 base at 3 sigma
    (tests/test_mock_survey.py). Used by the mock survey and the library source."""
    with np.errstate(divide="ignore", invalid="ignore"):
        sig = np.abs(coef) / err > threshold
    last = coef.shape[1] - 1 - np.argmax(sig[:, ::-1], axis=1)
    return np.where(sig.any(axis=1), last + 1, 0)
