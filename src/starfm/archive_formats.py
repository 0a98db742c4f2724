"""The Gaia archive's XP table formats: what ``Gaia.load_data(retrieval_type='XP_CONTINUOUS',
data_structure='RAW', format=...)`` returns, written and read back byte for byte.

``gaiadr3.xp_continuous_mean_spectrum`` in the archive's column order (:data:`XP_ARCHIVE_SCHEMA`),
its serialisation in each format the archive serves (:data:`XP_FORMATS`: BINARY2 and TABLEDATA
VOTable, FITS, CSV, ECSV; :func:`serialise_xp`), and reading a DataLink product the way astroquery
does (:func:`read_datalink_product`, :func:`read_datalink_zip`). The mock archive
(:mod:`starfm.mock.archive`) serves its store through these; the real client's tests read real
archive files with them.
"""
from __future__ import annotations

import base64
import csv
import io
import zipfile

import numpy as np
from astropy.io import fits, votable
from astropy.table import Column, MaskedColumn, Table

from starfm.gaia_archive import PermanentArchiveError
from starfm.xp_tables import BANDS, N_COEFFICIENTS

N_CORRELATIONS = N_COEFFICIENTS * (N_COEFFICIENTS - 1) // 2  # 1485
DR3_SOLUTION_ID = 4545469030156206080
XP_FORMATS = ("votable", "votable_plain", "fits", "csv", "ecsv")
# file extension of each load_data format (astroquery picks its reader by extension)
XP_FORMAT_EXTENSION = {"votable": "xml", "votable_plain": "xml", "fits": "fits", "csv": "csv", "ecsv": "ecsv"}
XP_PRODUCT_PREFIX = "XP_CONTINUOUS_RAW"
XP_BASIS_FUNCTION_ID = {"bp": 56, "rp": 57}  # DR3's basis of each band

# gaiadr3.xp_continuous_mean_spectrum, in the archive's column order:
# (name, numpy dtype, VOTable datatype, kind) with kind "id", "scalar" or "array"
XP_ARCHIVE_SCHEMA: list[tuple[str, str, str, str]] = [
    ("source_id", "int64", "long", "id"), ("solution_id", "int64", "long", "id")]
for _b in BANDS:
    XP_ARCHIVE_SCHEMA += [
        (f"{_b}_basis_function_id", "int16", "short", "scalar"),
        (f"{_b}_degrees_of_freedom", "int16", "short", "scalar"),
        (f"{_b}_n_parameters", "int16", "short", "scalar"),
        (f"{_b}_n_measurements", "int16", "short", "scalar"),
        (f"{_b}_n_rejected_measurements", "int16", "short", "scalar"),
        (f"{_b}_standard_deviation", "float32", "float", "scalar"),
        (f"{_b}_chi_squared", "float32", "float", "scalar"),
        (f"{_b}_coefficients", "float64", "double", "array"),
        (f"{_b}_coefficient_errors", "float32", "float", "array"),
        (f"{_b}_coefficient_correlations", "float32", "float", "array"),
        (f"{_b}_n_relevant_bases", "int16", "short", "scalar"),
        (f"{_b}_relative_shrinking", "float32", "float", "scalar"),
    ]
_INT16_NULL = -32768  # the archive's TNULL for short columns
# the archive's columns without the correlations (what a mock XP store holds), name -> dtype
XP_STORE_DTYPES = {name: dtype for name, dtype, _, _ in XP_ARCHIVE_SCHEMA
                   if not name.endswith("coefficient_correlations")}


# ----------------------------------------------------------------------------- reading products
def read_datalink_product(name: str, data: bytes) -> list:
    """Read one DataLink file the way ``astroquery.gaia.Gaia.load_data`` does (by extension).

    ``.xml`` -> VOTable ``TableElement``s; ``.fits`` -> one Table per extension; ``.csv`` ->
    ``ascii.csv`` with ``fast_reader=False``. astroquery 0.4.11 leaves ``.ecsv`` unparsed;
    here it is read with ``ascii.ecsv`` (only the mock serves it).
    """
    if name.endswith(".fits"):
        with fits.open(io.BytesIO(data)) as hdul:
            return [Table.read(hdul[i], format="fits") for i in range(1, len(hdul))]
    if name.endswith(".xml"):
        return list(votable.parse(io.BytesIO(data)).iter_tables())
    if name.endswith(".csv"):
        return [Table.read(data.decode(), format="ascii.csv", fast_reader=False)]
    if name.endswith(".ecsv"):
        return [Table.read(data.decode(), format="ascii.ecsv")]
    raise PermanentArchiveError(f"unknown DataLink product type: {name}")


def read_datalink_zip(path_or_bytes) -> dict[str, list]:
    """A DataLink zip (``load_data(dump_to_file=True)`` output) -> the ``load_data`` dict."""
    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    with zipfile.ZipFile(src) as z:
        return {n: read_datalink_product(n, z.read(n)) for n in z.namelist()}


# ----------------------------------------------------------------------------- archive XP table
def xp_archive_columns(store: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Store rows -> archive columns: name -> (values, null mask); arrays as (n, L) blocks.

    A band whose ``n_parameters`` is 0 (or whose coefficients are NaN) is null in every one of
    its columns, as in the archive. Columns the store lacks get plausible values (basis ids
    56/57, the DR3 solution id, degrees of freedom = measurements - parameters) or nulls.
    """
    sid = np.asarray(store["source_id"], np.int64)
    n = len(sid)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {
        "source_id": (sid, np.zeros(n, bool)),
        "solution_id": (np.asarray(store.get("solution_id", np.full(n, DR3_SOLUTION_ID)), np.int64),
                        np.zeros(n, bool)),
    }
    for band in BANDS:
        coef = np.asarray(store[f"{band}_coefficients"], np.float64)
        npar = np.asarray(store.get(f"{band}_n_parameters", np.full(n, N_COEFFICIENTS)))
        present = (npar > 0) & ~np.all(np.isnan(coef), axis=1)
        null = ~present
        n_meas = np.asarray(store.get(f"{band}_n_measurements", np.full(n, 1000)))
        dof = n_meas - npar
        defaults = {  # plausible values for what the store does not hold
            f"{band}_basis_function_id": np.full(n, XP_BASIS_FUNCTION_ID[band]),
            f"{band}_n_parameters": npar,
            f"{band}_n_measurements": n_meas,
            f"{band}_n_rejected_measurements": np.zeros(n),
            f"{band}_degrees_of_freedom": dof,
            f"{band}_chi_squared": dof.astype(np.float32),  # reduced chi^2 of 1
            f"{band}_relative_shrinking": np.ones(n),
            f"{band}_n_relevant_bases": npar,
            f"{band}_coefficients": coef,
            f"{band}_coefficient_correlations": np.zeros((n, N_CORRELATIONS), np.float32),
        }
        for name, dtype, _, kind in XP_ARCHIVE_SCHEMA:
            if not name.startswith(band + "_"):
                continue
            if name in store:
                values, col_null = np.asarray(store[name]), null
            elif name in defaults:
                values, col_null = defaults[name], null
            else:  # not in the store: null, as the archive gives an unknown value
                shape = (n, N_COEFFICIENTS) if kind == "array" else (n,)
                values, col_null = np.zeros(shape), np.ones(n, bool)
            values = np.asarray(values)
            if dtype.startswith("int"):
                values = np.where(col_null, 0, np.nan_to_num(values)).astype(dtype)
            else:
                values = values.astype(dtype)
            out[name] = (values, np.asarray(col_null, bool))
    return out


def _object_cells(values: np.ndarray, null: np.ndarray, masked: bool) -> np.ndarray:
    """(n, L) block -> object array of per-row arrays; null rows get an empty array."""
    n = len(values)
    cells = np.empty(n, dtype=object)
    empty = np.zeros(0, values.dtype)
    if masked:  # the VOTable writer wants a full mask on every cell
        rows = [np.ma.MaskedArray(r, mask=np.zeros(r.shape, bool)) for r in values]
        empty = np.ma.MaskedArray(empty, mask=np.zeros(0, bool))
    else:
        rows = list(values)
    for i in np.flatnonzero(null):
        rows[i] = empty
    for i, row in enumerate(rows):  # element-wise: numpy would turn a list of arrays into 2-D
        cells[i] = row
    return cells


def xp_archive_table(cols: dict[str, tuple[np.ndarray, np.ndarray]]) -> Table:
    """Archive columns -> astropy Table (object columns for the arrays, masked nulls)."""
    t = Table()
    for name, dtype, _, kind in XP_ARCHIVE_SCHEMA:
        values, null = cols[name]
        if kind == "array":
            t[name] = Column(_object_cells(values, null, masked=False))
        elif kind == "id":
            t[name] = Column(values)
        else:
            fill = _INT16_NULL if dtype == "int16" else np.nan
            t[name] = MaskedColumn(values, mask=null, fill_value=fill)
    return t


def _text_cells(values: np.ndarray, null: np.ndarray, sep: str, opening: str, closing: str) -> list[str]:
    """(n, L) block -> one text cell per row, shortest repr of each value (float32 as float32)."""
    strings = values.astype(str)  # vectorised, shortest round-trip repr for the dtype
    cells = [opening + sep.join(r) + closing for r in strings.tolist()]
    for i in np.flatnonzero(null):
        cells[i] = ""
    return cells


def _scalar_text(values: np.ndarray, null: np.ndarray) -> list[str]:
    text = values.astype(str).tolist()
    for i in np.flatnonzero(null):
        text[i] = ""
    return text


def serialise_xp(cols: dict[str, tuple[np.ndarray, np.ndarray]], fmt: str) -> bytes:
    """The archive's file for ``format=fmt`` (bytes)."""
    if fmt == "fits":
        buf = io.BytesIO()
        xp_archive_table(cols).write(buf, format="fits")
        return buf.getvalue()
    if fmt == "ecsv":
        buf = io.StringIO()
        xp_archive_table(cols).write(buf, format="ascii.ecsv")
        return buf.getvalue().encode()
    if fmt == "csv":
        return _write_csv(cols)
    if fmt == "votable":
        return _write_votable(cols, binary=True)
    if fmt == "votable_plain":
        return _write_votable(cols, binary=False)
    raise ValueError(f"unknown XP format '{fmt}'; choose one of {XP_FORMATS}")


def _write_csv(cols) -> bytes:
    """Archive CSV: arrays as quoted "(v1, v2, ...)", nulls empty."""
    columns = []
    for name, _, _, kind in XP_ARCHIVE_SCHEMA:
        values, null = cols[name]
        columns.append(_text_cells(values, null, ", ", "(", ")") if kind == "array"
                       else _scalar_text(values, null))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([s[0] for s in XP_ARCHIVE_SCHEMA])
    writer.writerows(zip(*columns))
    return buf.getvalue().encode()


def _votable_header(binary: bool) -> str:
    fields = "\n".join(
        f'<FIELD datatype="{vot}" name="{name}"' + (' arraysize="*"' if kind == "array" else "") + "/>"
        for name, _, vot, kind in XP_ARCHIVE_SCHEMA)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<VOTABLE version="1.4" xmlns="http://www.ivoa.net/xml/VOTable/v1.3">\n'
            '<RESOURCE type="results">\n<TABLE>\n' + fields + "\n<DATA>\n")


def _write_votable(cols, binary: bool) -> bytes:
    """The archive's VOTable: BINARY2 (``votable``) or TABLEDATA (``votable_plain``).

    Written with numpy (astropy's writer takes ~25 s per 5,000 rows for the correlations).
    """
    head = _votable_header(binary)
    tail = "</DATA>\n</TABLE>\n</RESOURCE>\n</VOTABLE>\n"
    if not binary:
        columns = []
        for name, _, _, kind in XP_ARCHIVE_SCHEMA:
            values, null = cols[name]
            columns.append(_text_cells(values, null, " ", "", "") if kind == "array"
                           else _scalar_text(values, null))
        rows = "".join("<TR>" + "".join(f"<TD>{c}</TD>" for c in row) + "</TR>\n" for row in zip(*columns))
        return (head + "<TABLEDATA>\n" + rows + "</TABLEDATA>\n" + tail).encode()
    return (head + '<BINARY2>\n<STREAM encoding="base64">\n').encode() \
        + base64.encodebytes(_binary2_rows(cols)) + ("</STREAM>\n</BINARY2>\n" + tail).encode()


def _binary2_rows(cols) -> bytes:
    """VOTable BINARY2 stream: per row a null bitmap, then big-endian values; variable arrays
    as a 4-byte count plus elements. Rows are grouped into runs sharing which bands are null
    (a loop over runs, not over stars)."""
    names = [s[0] for s in XP_ARCHIVE_SCHEMA]
    n = len(cols["source_id"][0])
    n_flag_bytes = (len(names) + 7) // 8
    flags = np.zeros((n, len(names)), bool)
    for j, name in enumerate(names):
        flags[:, j] = cols[name][1]
    packed = np.packbits(flags, axis=1, bitorder="big")  # field 1 = most significant bit
    bp_null, rp_null = cols["bp_coefficients"][1], cols["rp_coefficients"][1]
    pattern = bp_null.astype(np.int8) + 2 * rp_null.astype(np.int8)
    edges = np.flatnonzero(np.diff(pattern)) + 1
    starts, stops = np.concatenate([[0], edges]), np.concatenate([edges, [n]])
    chunks = []
    for a, b in zip(starts, stops):
        if a == b:
            continue
        spec = [("_flags", "u1", (n_flag_bytes,))]
        for name, dtype, _, kind in XP_ARCHIVE_SCHEMA:
            be = np.dtype(dtype).newbyteorder(">")
            if kind == "array":
                width = 0 if cols[name][1][a] else cols[name][0].shape[1]
                spec.append((name + "__n", ">i4"))
                if width:
                    spec.append((name, be, (width,)))
            else:
                spec.append((name, be))
        rec = np.zeros(b - a, dtype=np.dtype(spec))
        rec["_flags"] = packed[a:b]
        for name, _, _, kind in XP_ARCHIVE_SCHEMA:
            if kind == "array":
                if name in rec.dtype.names:
                    rec[name + "__n"] = cols[name][0].shape[1]
                    rec[name] = cols[name][0][a:b]
            else:
                rec[name] = cols[name][0][a:b]
        chunks.append(rec.tobytes())
    return b"".join(chunks)
