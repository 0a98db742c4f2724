"""Reading anyone's XP / gaia_source / 2MASS tables in chunks, and writing catalogues by extension.

Readers (:func:`iter_xp_chunks`) turn every XP format the Gaia archive serves (and the copies
other people keep) into ``xp_continuous.h5`` columns (``starfm.xp_tables``), a chunk of rows at a
time, so memory is bounded whatever the file size:

* CSV / ECSV (also ``.gz``; Gaia DR3's bulk ``XpContinuousMeanSpectrum_*.csv.gz`` are ECSV inside):
  streamed with pandas; the 1485-value correlation columns are never parsed.
* FITS (``.fits``, ``.fit``, ``.fits.gz``): memory-mapped, sliced.
* HDF5 (``.h5``, ``.hdf5``): an ``xp_continuous.h5`` column table, sliced.
* VOTable (``.xml``, ``.vot``, ``.votable``), DataLink ``.zip`` and ``.npz`` (``X`` = 110 raw
  coefficients BP then RP, plus ``source_id``; or per-column arrays): read whole (these formats
  cannot be sliced; archive results in them are small).

:func:`read_table_any` reads a whole side table (gaia_source, 2MASS) in any of those formats or
Parquet. :class:`CatalogueWriter` appends chunks to ``.h5``/``.hdf5``, ``.fits``, ``.csv``,
``.ecsv`` or ``.parquet`` (pyarrow) and moves the file into place atomically at the end.
"""
from __future__ import annotations

import gzip
import io
import json
import warnings
from pathlib import Path
from typing import Iterator, Mapping

import h5py
import numpy as np

from starfm.errors import StarfmInputError
from starfm.tables import atomic_path
from starfm.xp_tables import N_COEFFICIENTS, parse_xp_table, parse_xp_tables, reconcile_bands

OUTPUT_FORMATS = (".h5", ".hdf5", ".fits", ".csv", ".ecsv", ".parquet")


def _suffix(path) -> str:
    """The format suffix of ``path``, ``.gz`` looked through (``a.csv.gz`` -> ``.csv``)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _exists(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise StarfmInputError(f"{path}: file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise StarfmInputError(f"{path}: the file is empty")
    return path


# ----------------------------------------------------------------------------- text tables
def _text_header(path) -> tuple[int, bool]:
    """(number of leading '#' lines, whether the file is ECSV)."""
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    n, ecsv = 0, False
    with opener(path, "rt") as f:
        for line in f:
            if not line.startswith("#"):
                break
            ecsv |= n == 0 and line.startswith("# %ECSV")
            n += 1
    return n, ecsv


def _iter_text(path, chunk_rows: int, skip_columns=("correlations",)) -> Iterator[dict]:
    """CSV / ECSV rows in chunks as name (lower case) -> numpy column (text cells as str)."""
    import pandas as pd

    n_header, _ = _text_header(path)
    try:
        names = pd.read_csv(path, skiprows=n_header, nrows=0).columns
        # array cells are text: an all-null array column must not be guessed to be a number
        text = {c: str for c in names if c.lower().endswith(("coefficients", "coefficient_errors"))}
        reader = pd.read_csv(path, skiprows=n_header, chunksize=chunk_rows, low_memory=False,
                             usecols=lambda c: not any(s in c.lower() for s in skip_columns),
                             keep_default_na=True, na_values=["null", "--"], dtype=text)
        for frame in reader:
            yield {str(c).lower(): (frame[c].to_numpy() if pd.api.types.is_numeric_dtype(frame[c])
                                    else np.asarray(frame[c].fillna(""), dtype=str))
                   for c in frame.columns}
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise StarfmInputError(f"{path}: not a readable CSV/ECSV table ({exc})") from None


def _table_from_columns(cols: Mapping):
    from astropy.table import Table

    return Table({k: v for k, v in cols.items()})


# ----------------------------------------------------------------------------- XP chunks
def iter_xp_chunks(path, chunk_rows: int = 100_000) -> Iterator[tuple[dict, dict]]:
    """Yield ``(xp, extra)`` per chunk: ``xp`` the ``xp_continuous.h5`` columns (sorted by
    source_id within the chunk), ``extra`` the chunk's other scalar columns (e.g. a
    ``phot_g_mean_mag`` that some XP files carry), aligned with ``xp``."""
    path = _exists(path)
    kind = _suffix(path)
    source = str(path)
    if kind in (".csv", ".ecsv", ".txt"):
        for cols in _iter_text(path, chunk_rows):
            yield _parse(cols, source)
    elif kind in (".fits", ".fit", ".fts"):
        from astropy.table import Table
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                table = Table.read(path, memmap=not str(path).endswith(".gz"))
            except Exception as exc:  # astropy raises many kinds on a broken file
                raise StarfmInputError(f"{path}: not a readable FITS table ({exc})") from None
        for start in range(0, max(len(table), 1), chunk_rows):
            part = table[start:start + chunk_rows]
            yield _parse({c.lower(): part[c] for c in part.colnames}, source)
    elif kind in (".h5", ".hdf5"):
        yield from _iter_hdf5(path, chunk_rows)
    elif kind in (".xml", ".vot", ".votable", ".zip"):
        yield _whole(path, kind)
    elif kind == ".npz":
        yield _npz(path)
    else:
        raise StarfmInputError(f"{path}: unknown XP file type '{kind}' (use .csv, .ecsv, .fits, "
                               ".h5, .xml/.vot, a DataLink .zip or .npz; .gz allowed)")


def _parse(cols: Mapping, source: str) -> tuple[dict, dict]:
    """One chunk's columns -> (xp columns sorted by source_id, the other scalar columns)."""
    if "source_id" not in cols:
        raise StarfmInputError(f"{source}: no source_id column; it has {sorted(cols)}")
    xp = parse_xp_table(_table_from_columns(cols), source)
    extra = {k: np.asarray(v) for k, v in cols.items()
             if not k.startswith(("bp_", "rp_", "e_bp_", "e_rp_")) and k != "solution_id"
             and np.ndim(v) == 1 and np.asarray(v).dtype.kind in "biuf"}
    extra["source_id"] = xp["source_id"]
    order = np.argsort(xp["source_id"], kind="stable")
    xp = reconcile_bands({k: v[order] for k, v in xp.items()})
    if len(xp["source_id"]) != len(order):   # a star split over two rows: keep the first extras
        _, first = np.unique(extra["source_id"][order], return_index=True)
        order = order[first]
    return xp, {k: v[order] for k, v in extra.items()}


def _iter_hdf5(path, chunk_rows):
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StarfmInputError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
        if "source_id" not in names:
            raise StarfmInputError(f"{path}: no source_id column; it has {sorted(names)}")
        n = len(f["source_id"])
        for name in names:
            if f[name].shape[:1] != (n,):
                raise StarfmInputError(f"{path}: column '{name}' has {f[name].shape[:1]} rows, "
                                       f"source_id has {n}")
        for start in range(0, max(n, 1), chunk_rows):
            cols = {k.lower(): f[k][start:start + chunk_rows] for k in names
                    if f[k].ndim == 1 or f[k].shape[1] == N_COEFFICIENTS}
            yield _parse(cols, str(path))


def _whole(path, kind):
    if kind == ".zip":
        from starfm.archive_formats import read_datalink_zip
        try:
            obj = read_datalink_zip(path)
        except Exception as exc:
            raise StarfmInputError(f"{path}: not a readable DataLink zip ({exc})") from None
    else:
        from astropy.io import votable
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                obj = list(votable.parse(path).iter_tables())
            except Exception as exc:
                raise StarfmInputError(f"{path}: not a readable VOTable ({exc})") from None
    xp = parse_xp_tables(obj, str(path))
    return xp, {"source_id": xp["source_id"]}


def _npz(path):
    try:
        z = dict(np.load(path))
    except Exception as exc:
        raise StarfmInputError(f"{path}: not a readable .npz ({exc})") from None
    cols = {k.lower(): v for k, v in z.items()}
    if "x" in cols and "bp_coefficients" not in cols:
        x = cols.pop("x")
        if x.ndim != 2 or x.shape[1] != 2 * N_COEFFICIENTS:
            raise StarfmInputError(f"{path}: array 'X' has shape {x.shape}, expected (n, 110)")
        cols["bp_coefficients"], cols["rp_coefficients"] = x[:, :N_COEFFICIENTS], x[:, N_COEFFICIENTS:]
    if "source_id" in cols:
        n = len(cols["source_id"])
        bad = {k: v.shape for k, v in cols.items() if len(v) != n}
        if bad:
            raise StarfmInputError(f"{path}: arrays of a length other than source_id's {n}: {bad}")
        cols = {k: v for k, v in cols.items() if v.ndim == 1 or v.shape[1] == N_COEFFICIENTS}
    return _parse(cols, str(path))


# ----------------------------------------------------------------------------- side tables
def read_table_any(path, what: str) -> dict[str, np.ndarray]:
    """A whole table (gaia_source, 2MASS) as lower-case name -> 1-D numeric column (NaN = null)."""
    path = _exists(path)
    kind = _suffix(path)
    if kind in (".h5", ".hdf5"):
        from starfm.tables import read_table
        cols = {k.lower(): v for k, v in read_table(path).items()}
    elif kind in (".csv", ".ecsv", ".txt"):
        parts = list(_iter_text(path, 1_000_000, skip_columns=("coefficient",)))
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    elif kind == ".parquet":
        cols = {k.lower(): v for k, v in _read_parquet(path).items()}
    elif kind == ".json":
        from starfm.xp_tables import as_tables, read_tap_json
        try:
            table = as_tables(read_tap_json(path))[0]
        except (ValueError, KeyError) as exc:
            raise StarfmInputError(f"{path}: not a TAP JSON table ({exc})") from None
        cols = {k.lower(): table[k] for k in table.colnames}
    else:
        from astropy.table import Table
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                table = Table.read(path)
            except Exception as exc:
                raise StarfmInputError(f"{path}: not a readable {what} table ({exc})") from None
        cols = {k.lower(): table[k] for k in table.colnames}
    if "source_id" not in cols:
        raise StarfmInputError(f"{path}: no source_id column in the {what} table; "
                               f"it has {sorted(cols)}")
    out = {}
    for name, col in cols.items():
        arr = np.ma.asarray(col)
        if arr.ndim != 1 or arr.dtype.kind not in "biuf":
            continue
        if name == "source_id":
            if np.ma.is_masked(arr):
                raise StarfmInputError(f"{path}: null source_id in the {what} table")
            out[name] = np.asarray(arr, dtype=np.int64)
        else:
            out[name] = np.ma.filled(arr.astype(np.float64), np.nan)
    if len(out["source_id"]) == 0:
        raise StarfmInputError(f"{path}: the {what} table is empty")
    return out


def _read_parquet(path) -> dict:
    pq = _pyarrow(path)
    return {k: np.asarray(v) for k, v in pq.read_table(path).to_pydict().items()}


def _pyarrow(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise StarfmInputError(f"{path}: Parquet needs pyarrow, which is not installed "
                               "(pip install pyarrow, or pip install 'starfm[parquet]')") from None
    return pq


# ----------------------------------------------------------------------------- writer
class CatalogueWriter:
    """Append chunks of equal columns to a table; the format follows the extension.

    Use as a context manager; the file appears (atomically) only when the block ends without
    an error. ``meta`` (JSON-able) goes to the HDF5 attributes / FITS header / ECSV meta /
    Parquet schema metadata.
    """

    def __init__(self, path, meta: Mapping | None = None):
        self.path = Path(path)
        self.kind = _suffix(self.path)
        if self.kind not in OUTPUT_FORMATS or self.path.name.endswith(".gz"):
            raise StarfmInputError(f"{self.path}: unknown output type '{self.kind}' "
                                   f"(use one of {', '.join(OUTPUT_FORMATS)})")
        if self.kind == ".parquet":
            _pyarrow(self.path)
        self.meta = dict(meta or {})
        self.n = 0
        self._names = None

    def __enter__(self):
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        self._handle = None
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                if self._names is None:
                    raise StarfmInputError(f"{self.path}: nothing to write")
                self._finish()
            elif self._handle is not None:
                self._handle.close()
        except BaseException as inner:
            self._atomic.__exit__(type(inner), inner, inner.__traceback__)
            raise
        return self._atomic.__exit__(exc_type, exc, tb)

    def write(self, columns: Mapping[str, np.ndarray]) -> None:
        cols = {k: np.asarray(v) for k, v in columns.items()}
        if self._names is None:
            self._names = list(cols)
            self._dtypes = {k: v.dtype for k, v in cols.items()}
            self._shapes = {k: v.shape[1:] for k, v in cols.items()}
            wide = [k for k, shape in self._shapes.items() if shape]
            if wide and self.kind not in (".h5", ".hdf5", ".fits"):
                raise StarfmInputError(f"{self.path}: array columns {wide} need .h5/.hdf5 or .fits "
                                       f"output, not {self.kind}")
            self._start()
        if list(cols) != self._names:
            raise ValueError(f"{self.path}: chunk columns {list(cols)} differ from {self._names}")
        cols = {k: v.astype(self._dtypes[k], copy=False) for k, v in cols.items()}
        getattr(self, f"_write_{self.kind[1:]}")(cols)
        self.n += len(cols[self._names[0]])

    # -- per format --
    def _start(self):
        if self.kind in (".h5", ".hdf5"):
            self._handle = h5py.File(self._tmp, "w", track_order=True)  # keep column order
            for k in self._names:
                shape = self._shapes[k]
                self._handle.create_dataset(k, shape=(0,) + shape, maxshape=(None,) + shape,
                                            dtype=self._dtypes[k],
                                            chunks=(max(1, 65536 // max(1, int(np.prod(shape)))),) + shape)
            for k, v in self.meta.items():
                self._handle.attrs[k] = v if isinstance(v, (int, float, str)) else "json:" + json.dumps(v)
        elif self.kind == ".fits":
            self._handle = open(self._tmp, "wb")
            self._row_dtype = np.dtype([(k, self._dtypes[k].newbyteorder(">"), self._shapes[k])
                                        for k in self._names])
            self._handle.write(b"\0" * (2880 * 2 + self._header_bytes()))  # room for the headers
        elif self.kind in (".csv", ".ecsv"):
            self._handle = open(self._tmp, "w", newline="")
            if self.kind == ".ecsv":
                self._handle.write(self._ecsv_header())
            self._handle.write(",".join(self._names) + "\n")
        elif self.kind == ".parquet":
            import pyarrow as pa
            pq = _pyarrow(self.path)
            schema = pa.schema([(k, pa.from_numpy_dtype(self._dtypes[k])) for k in self._names],
                               metadata={"starfm": json.dumps(self.meta)})
            self._handle = pq.ParquetWriter(str(self._tmp), schema)

    def _write_h5(self, cols):
        for k, v in cols.items():
            d = self._handle[k]
            d.resize((self.n + len(v),) + v.shape[1:])
            d[self.n:] = v

    _write_hdf5 = _write_h5

    def _write_fits(self, cols):
        rows = np.empty(len(cols[self._names[0]]), dtype=self._row_dtype)
        for k, v in cols.items():
            rows[k] = v
        self._handle.write(rows.tobytes())

    def _write_csv(self, cols):
        import pandas as pd
        pd.DataFrame(cols).to_csv(self._handle, header=False, index=False, na_rep="nan",
                                  float_format="%.9g", lineterminator="\n")

    _write_ecsv = _write_csv

    def _write_parquet(self, cols):
        import pyarrow as pa
        self._handle.write_table(pa.table(cols))

    def _finish(self):
        if self.kind == ".fits":
            self._finish_fits()
        self._handle.close()
        self._handle = None

    # FITS: primary + binary-table headers are written last into the room left at the start
    def _fits_headers(self, n_rows: int) -> tuple[bytes, bytes]:
        from astropy.io import fits
        empty = np.zeros(0, dtype=self._row_dtype)
        hdu = fits.BinTableHDU(data=empty, name="STARFM")
        for k, v in self.meta.items():
            text = v if isinstance(v, str) else json.dumps(v)
            if len(text) < 60 and len(k) <= 8:
                hdu.header[k.upper()] = text
        hdu.header["NAXIS2"] = n_rows
        primary = fits.PrimaryHDU()
        primary.header["STARFM"] = json.dumps(self.meta)[:60]
        return primary.header.tostring().encode(), hdu.header.tostring().encode()

    def _header_bytes(self) -> int:
        p, t = self._fits_headers(10**12)
        return len(p) + len(t) - 2 * 2880

    def _finish_fits(self):
        data_bytes = self.n * self._row_dtype.itemsize
        pad = (-data_bytes) % 2880
        self._handle.write(b"\0" * pad)
        primary, table = self._fits_headers(self.n)
        reserved = 2880 * 2 + self._header_bytes()
        if len(primary) + len(table) != reserved:
            raise RuntimeError("FITS header size changed")  # cannot happen: NAXIS2 is fixed width
        self._handle.seek(0)
        self._handle.write(primary + table)

    def _ecsv_header(self) -> str:
        from astropy.table import Table
        empty = Table({k: np.zeros(0, self._dtypes[k]) for k in self._names})
        empty.meta.update({k: v for k, v in self.meta.items()})
        buf = io.StringIO()
        empty.write(buf, format="ascii.ecsv", delimiter=",")
        return "".join(line + "\n" for line in buf.getvalue().splitlines() if line.startswith("#"))


def read_columns(path) -> dict[str, np.ndarray]:
    """A table this module wrote, whole, columns in their order and dtypes (HDF5 read directly,
    other formats through :func:`read_table_any`)."""
    path = _exists(path)
    if _suffix(path) not in (".h5", ".hdf5"):
        return read_table_any(path, "table")
    try:
        with h5py.File(path, "r") as f:
            return {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
    except OSError as exc:
        raise StarfmInputError(f"{path}: not a readable HDF5 file ({exc})") from None
