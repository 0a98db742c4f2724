"""Column tables on disk, written atomically (the one-line errors are :mod:`starfm.errors`).

Every stage hands its result to the next as an HDF5 file holding one dataset per
column (all of the same length; 2-D columns such as ``bp_coefficients`` allowed)
plus JSON-able attributes. Writes go to a temporary file beside the target and
are renamed into place, so a killed stage never leaves a half-written output.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import h5py
import numpy as np

from starfm.errors import StarfmInputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix + ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates the file 0600; give the output the usual permissions (umask)
        umask = os.umask(0)
        os.umask(umask)
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def json_safe(obj):
    """``obj`` as strict JSON data: NaN/inf -> null, numpy scalars -> Python numbers, tuples ->
    lists, dict keys -> str (metrics.json, the figures' numbers)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _encode_attr(value):
    if isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    return "json:" + json.dumps(value)


def _decode_attr(value):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str) and value.startswith("json:"):
        return json.loads(value[5:])
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_table(path: str | os.PathLike, columns: Mapping[str, np.ndarray],
                attrs: Mapping | None = None, groups: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                compression: str | None = None) -> None:
    """Write ``columns`` (name -> array, equal first dimension) to an HDF5 file atomically.

    ``groups`` adds named sub-tables (e.g. ``{"truth": {...}}``); ``attrs`` are stored on the
    root (strings, numbers, numeric arrays; anything else as JSON).
    """
    lengths = {name: len(np.asarray(col)) for name, col in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of unequal length for {path}: {lengths}")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            _write_group(f, columns, compression)
            for gname, gcols in (groups or {}).items():
                _write_group(f.create_group(gname), gcols, compression)
            for key, value in (attrs or {}).items():
                f.attrs[key] = _encode_attr(value)


def _write_group(group, columns, compression):
    for name, col in columns.items():
        arr = np.asarray(col)
        if arr.dtype.kind == "U":
            arr = np.char.encode(arr, "utf-8")
        if arr.dtype == object:
            arr = np.asarray([str(v).encode() for v in arr])
        group.create_dataset(name, data=arr, compression=compression)


# the only text columns of our tables; every other column must hold numbers
TEXT_COLUMNS = frozenset({"apogee_id", "evol_state"})


def read_table(path: str | os.PathLike, columns: Iterable[str] | None = None,
               group: str | None = None) -> dict[str, np.ndarray]:
    """Read columns (all, or those named) of an HDF5 column table.

    One-line errors name the file and the column: a missing file, group or column, a text or
    compound column where numbers belong (any column but :data:`TEXT_COLUMNS`), and columns of
    unequal length.
    """
    path = Path(path)
    if not path.exists():
        raise StarfmInputError(f"{path}: file not found")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StarfmInputError(f"{path}: not a readable HDF5 file ({exc})") from exc
    with f:
        g = f if group is None else f.get(group)
        if g is None:
            raise StarfmInputError(f"{path}: has no group '{group}'")
        names = [k for k in g.keys() if isinstance(g[k], h5py.Dataset)]
        wanted = names if columns is None else list(columns)
        missing = [c for c in wanted if c not in names]
        if missing:
            raise StarfmInputError(f"{path}: missing column(s) {missing}; it has {sorted(names)}")
        out = {}
        where = f"{path}" + (f" (group '{group}')" if group else "")
        for c in wanted:
            arr = g[c][()]
            if c in TEXT_COLUMNS and arr.dtype.kind == "S":
                arr = np.char.decode(arr, "utf-8")
            elif c not in TEXT_COLUMNS and arr.dtype.kind not in "biuf":
                raise StarfmInputError(f"{where}: column '{c}' has dtype {arr.dtype}, expected "
                                       f"numbers (wrong or corrupt file?)")
            out[c] = arr
        lengths = {c: (len(a) if a.ndim else None) for c, a in out.items()}
        if len(set(lengths.values())) > 1:
            raise StarfmInputError(f"{where}: columns of unequal length {lengths}")
        return out


def column_names(path: str | os.PathLike) -> list[str]:
    """The column names of an HDF5 column table (top level), without reading the data."""
    path = Path(path)
    if not path.exists():
        raise StarfmInputError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            return [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
    except OSError as exc:
        raise StarfmInputError(f"{path}: not a readable HDF5 file ({exc})") from exc


def read_attrs(path: str | os.PathLike) -> dict:
    """Root attributes of an HDF5 file written by :func:`write_table`."""
    with h5py.File(path, "r") as f:
        return {k: _decode_attr(v) for k, v in f.attrs.items()}


def match_rows(table_ids: np.ndarray, query_ids: np.ndarray, source: str = "") -> np.ndarray:
    """Row of ``table_ids`` holding each query id (its first occurrence), -1 where absent: the
    one join by ``source_id`` (assembly's tables, predict's side tables). ``source``: a file
    name to log a warning under when ``table_ids`` repeats an id."""
    table_ids, query_ids = np.asarray(table_ids), np.asarray(query_ids)
    if len(table_ids) == 0:
        return np.full(len(query_ids), -1, dtype=np.int64)
    order = np.argsort(table_ids, kind="stable")  # stable: among repeats the first row sorts first
    sorted_ids = table_ids[order]
    if source and len(sorted_ids) > 1 and (sorted_ids[1:] == sorted_ids[:-1]).any():
        import logging
        n_dup = int((sorted_ids[1:] == sorted_ids[:-1]).sum())
        logging.getLogger("starfm.tables").warning(
            "%s: %d repeated source_id rows; using the first row of each", source, n_dup)
    pos = np.minimum(np.searchsorted(sorted_ids, query_ids, side="left"), len(sorted_ids) - 1)
    return np.where(sorted_ids[pos] == query_ids, order[pos], -1)
