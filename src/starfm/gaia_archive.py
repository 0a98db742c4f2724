"""The Gaia archive, in one place: the real client (astroquery) and the mock survey's archive.

Both implement :class:`GaiaArchive`:

* ``query_gaia_source(source_ids) -> Table``: the ``gaiadr3.gaia_source`` columns starfm uses;
* ``load_xp_continuous(source_ids) -> {file name: [table, ...]}``: exactly what
  ``astroquery.gaia.Gaia.load_data(ids, retrieval_type='XP_CONTINUOUS', data_structure='RAW',
  format=...)`` returns (VOTable ``TableElement``s for ``.xml``, ``Table``s otherwise).

:class:`MockGaiaArchive` builds, for each request, the archive's table (real column names,
dtypes, correlation columns, null cells for a missing band), serialises it in the archive's
file format and reads it back the way astroquery does, so one parser
(:func:`starfm.xp_tables.parse_xp_tables`) serves mock and real runs. Errors are split into
:class:`TransientArchiveError` (retry: time-outs, resets, HTTP 5xx/429) and
:class:`PermanentArchiveError` (anything else).
"""
from __future__ import annotations

import base64
import contextlib
import csv
import http
import http.client
import io
import json
import logging
import re
import socket
import zipfile
from pathlib import Path
from typing import Protocol, Sequence

import h5py
import numpy as np
from astropy.io import fits, votable
from astropy.table import Column, MaskedColumn, Table

from starfm.io import StarfmInputError, read_table
from starfm.xp_tables import BANDS, GAIA_SOURCE_COLUMNS, GAIA_SOURCE_DTYPES, N_COEFFICIENTS

log = logging.getLogger(__name__)

MAX_IDS_PER_CALL = 5000  # the archive's DataLink limit
N_CORRELATIONS = N_COEFFICIENTS * (N_COEFFICIENTS - 1) // 2  # 1485
DR3_SOLUTION_ID = 4545469030156206080
XP_FORMATS = ("votable", "votable_plain", "fits", "csv", "ecsv")
# file extension of each load_data format (astroquery picks its reader by extension)
XP_FORMAT_EXTENSION = {"votable": "xml", "votable_plain": "xml", "fits": "fits", "csv": "csv", "ecsv": "ecsv"}
XP_PRODUCT_PREFIX = "XP_CONTINUOUS_RAW"

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


class ArchiveError(RuntimeError):
    """A Gaia archive call failed."""


class TransientArchiveError(ArchiveError):
    """Worth retrying: time-out, dropped connection, HTTP 5xx / 429, truncated download."""


class PermanentArchiveError(ArchiveError):
    """Retrying will not help (bad query, HTTP 4xx, unreadable answer)."""


class GaiaArchive(Protocol):
    def query_gaia_source(self, source_ids: Sequence[int]) -> Table: ...

    def load_xp_continuous(self, source_ids: Sequence[int]) -> dict[str, list]: ...


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
            f"{band}_basis_function_id": np.full(n, 56 if band == "bp" else 57),
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


# ----------------------------------------------------------------------------- mock archive
class MockGaiaArchive:
    """The mock survey's archive: ``<directory>/manifest.json``, ``gaia_source.h5``, ``xp_continuous.h5``.

    The XP store holds the archive columns except the correlations (a missing band: NaN
    coefficients, ``n_parameters`` 0). Each call serves its ids in the archive's format
    (``xp_format``; default: ``manifest.json``'s ``xp_format``, else ``votable``) and reads the
    file back as astroquery does. ``fail_first=k`` makes the first k calls raise
    :class:`TransientArchiveError`; ``fail_on_call={i: exc}`` raises ``exc`` on call i (0-based).
    """

    def __init__(self, directory, xp_format: str | None = None, fail_first: int = 0,
                 fail_on_call: dict[int, Exception] | None = None):
        self.directory = Path(directory)
        manifest_path = self.directory / "manifest.json"
        if not manifest_path.exists():
            raise StarfmInputError(f"{manifest_path}: mock archive manifest not found "
                                   "(run the mock-survey stage first)")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise StarfmInputError(f"{manifest_path}: not valid JSON ({exc})") from exc
        self.xp_format = xp_format or self.manifest.get("xp_format", "votable")
        if self.xp_format not in XP_FORMATS:
            raise StarfmInputError(f"{manifest_path}: xp_format '{self.xp_format}' is not one of {XP_FORMATS}")
        self.fail_first = fail_first
        self.fail_on_call = dict(fail_on_call or {})
        self.calls: list[tuple[str, np.ndarray]] = []  # (kind, ids) of every call, for tests
        self._gaia_source: dict[str, np.ndarray] | None = None
        self._xp_ids: np.ndarray | None = None

    # -- helpers
    def _before_call(self, kind: str, source_ids) -> np.ndarray:
        ids = np.asarray(source_ids, dtype=np.int64)
        if len(ids) > MAX_IDS_PER_CALL:
            raise PermanentArchiveError(f"{len(ids)} ids in one call; the archive allows {MAX_IDS_PER_CALL}")
        i = len(self.calls)
        self.calls.append((kind, ids))
        if i < self.fail_first:
            raise TransientArchiveError(f"mock archive: simulated time-out (call {i})")
        if i in self.fail_on_call:
            raise self.fail_on_call[i]
        return ids

    def _xp_store_rows(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of the XP store for ``ids`` (those present), read with h5py row selection so
        a 733,901-star store is never loaded whole."""
        path = self.directory / "xp_continuous.h5"
        if self._xp_ids is None:
            self._xp_ids = read_table(path, ["source_id"])["source_id"].astype(np.int64)
            self._xp_order = np.argsort(self._xp_ids, kind="stable")
        sorted_ids = self._xp_ids[self._xp_order]
        pos = np.clip(np.searchsorted(sorted_ids, ids), 0, max(len(sorted_ids) - 1, 0))
        found = (len(sorted_ids) > 0) & (sorted_ids[pos] == ids) if len(sorted_ids) else np.zeros(len(ids), bool)
        rows = np.unique(self._xp_order[pos[found]])
        out = {}
        with h5py.File(path, "r") as f:
            for name in f.keys():
                if not isinstance(f[name], h5py.Dataset) or name.endswith("coefficient_correlations"):
                    continue
                ds = f[name]
                if len(rows) == 0:
                    out[name] = ds[0:0]
                elif rows[-1] - rows[0] + 1 <= 4 * len(rows):  # dense: one slice, then pick
                    out[name] = ds[rows[0]:rows[-1] + 1][rows - rows[0]]
                else:
                    out[name] = ds[rows]
        return out

    # -- the GaiaArchive protocol
    def query_gaia_source(self, source_ids) -> Table:
        ids = self._before_call("gaia_source", source_ids)
        if self._gaia_source is None:
            self._gaia_source = read_table(self.directory / "gaia_source.h5", GAIA_SOURCE_COLUMNS)
        gs = self._gaia_source
        keep = np.isin(gs["source_id"], ids)
        t = Table()
        for name, dtype in GAIA_SOURCE_DTYPES.items():
            values = np.asarray(gs[name][keep]).astype(dtype)
            if dtype.kind == "f":
                t[name] = MaskedColumn(values, mask=np.isnan(values))
            elif name == "astrometric_params_solved":
                t[name] = MaskedColumn(values, mask=values == 0)
            else:
                t[name] = values
        # the archive's answer to an ADQL job, as a VOTable (upper-case SOURCE_ID as Gaia gives)
        t.rename_column("source_id", "SOURCE_ID")
        buf = io.BytesIO()
        t.write(buf, format="votable", tabledata_format="binary2")
        return Table.read(io.BytesIO(buf.getvalue()), format="votable")

    def load_xp_continuous(self, source_ids) -> dict[str, list]:
        ids = self._before_call("xp_continuous", source_ids)
        rows = self._xp_store_rows(ids)
        cols = xp_archive_columns(rows)
        both_null = cols["bp_coefficients"][1] & cols["rp_coefficients"][1]
        if both_null.any():  # a star without any XP is absent from the archive's answer
            cols = {k: (v[~both_null], m[~both_null]) for k, (v, m) in cols.items()}
        name = f"{XP_PRODUCT_PREFIX}.{XP_FORMAT_EXTENSION[self.xp_format]}"
        return {name: read_datalink_product(name, serialise_xp(cols, self.xp_format))}


# ----------------------------------------------------------------------------- real archive
_TRANSIENT_STATUS = {s.value for s in http.HTTPStatus if s.value >= 500} | {429, 408}
_TRANSIENT_PHRASES = {http.HTTPStatus(s).phrase.lower() for s in _TRANSIENT_STATUS}


def classify_archive_error(exc: BaseException) -> ArchiveError:
    """Map an exception from astroquery / requests / http.client to transient or permanent."""
    if isinstance(exc, ArchiveError):
        return exc
    import requests

    msg = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, requests.exceptions.HTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is None:  # astroquery's TapPlus raises HTTPError("Error 503: ...") or the reason
            m = re.search(r"\b(\d{3})\b", str(exc))
            status = int(m.group(1)) if m else None
        if status in _TRANSIENT_STATUS or str(exc).strip().lower() in _TRANSIENT_PHRASES:
            return TransientArchiveError(msg)
        return PermanentArchiveError(msg)
    transient = (requests.exceptions.Timeout, requests.exceptions.ConnectionError,
                 requests.exceptions.ChunkedEncodingError, socket.timeout, TimeoutError,
                 ConnectionError, http.client.IncompleteRead, http.client.RemoteDisconnected,
                 zipfile.BadZipFile, EOFError)
    if isinstance(exc, transient):
        return TransientArchiveError(msg)
    return PermanentArchiveError(msg)


@contextlib.contextmanager
def _socket_timeout(seconds: float | None):
    """astroquery's TapPlus opens http.client connections without a time-out: set the default."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


class AstroqueryGaiaArchive:
    """The real Gaia archive through ``astroquery.gaia.Gaia``.

    gaia_source: an asynchronous ADQL job joining ``gaiadr3.gaia_source`` with an uploaded table
    of the batch's ids (``tap_upload.starfm_ids``). An upload keeps the query short and the
    join on the primary key indexed, where ``WHERE source_id IN (...)`` with 5,000 ids makes a
    ~100 kB query string that TAP services may refuse. XP: ``Gaia.load_data(...,
    retrieval_type='XP_CONTINUOUS', data_structure='RAW', format=xp_format)``. ``ecsv`` is not
    offered: astroquery 0.4.11 returns unparsed, already deleted paths for ``.ecsv`` files.
    """

    def __init__(self, timeout: float = 600.0, xp_format: str = "votable", gaia=None,
                 data_release: str = "Gaia DR3"):
        if xp_format not in ("votable", "votable_plain", "fits", "csv"):
            raise StarfmInputError(f"xp format '{xp_format}' cannot be used with the real archive "
                                   "(astroquery parses votable, votable_plain, fits and csv)")
        self.timeout = timeout
        self.xp_format = xp_format
        self.data_release = data_release
        self._gaia = gaia

    @property
    def gaia(self):
        if self._gaia is None:
            from astroquery.gaia import Gaia  # imported here: starts no network until used
            self._gaia = Gaia
        return self._gaia

    def _call(self, what: str, func, *args, **kwargs):
        try:
            with _socket_timeout(self.timeout):
                return func(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is classified, none swallowed
            err = classify_archive_error(exc)
            raise type(err)(f"{what}: {err}") from exc

    def query_gaia_source(self, source_ids) -> Table:
        ids = Table({"source_id": np.asarray(source_ids, dtype=np.int64)})
        query = ("SELECT " + ", ".join(f"g.{c}" for c in GAIA_SOURCE_COLUMNS) +
                 " FROM gaiadr3.gaia_source AS g JOIN tap_upload.starfm_ids AS u"
                 " ON g.source_id = u.source_id")

        def run():
            job = self.gaia.launch_job_async(query, upload_resource=ids,
                                             upload_table_name="starfm_ids", verbose=False)
            return job.get_results()

        return self._call(f"gaia_source query for {len(ids)} ids", run)

    def load_xp_continuous(self, source_ids) -> dict[str, list]:
        ids = [int(i) for i in source_ids]
        return self._call(
            f"XP_CONTINUOUS load_data for {len(ids)} ids", self.gaia.load_data,
            ids=ids, data_release=self.data_release, retrieval_type="XP_CONTINUOUS",
            data_structure="RAW", format=self.xp_format)
