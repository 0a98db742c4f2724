"""The mock survey's Gaia archive: serves ``gaia_source.h5`` / ``xp_continuous.h5`` as the archive would.

For each request it builds the archive's table (real column names, dtypes, correlation columns,
null cells for a missing band), serialises it in the archive's file format
(:mod:`starfm.archive_formats`) and reads it back the way astroquery does, so the gaia-source /
gaia-xp stages see what the real archive (:class:`starfm.gaia_archive.AstroqueryGaiaArchive`)
would return.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
from astropy.table import MaskedColumn, Table

from starfm.archive_formats import (XP_FORMAT_EXTENSION, XP_FORMATS, XP_PRODUCT_PREFIX,
                                    read_datalink_product, serialise_xp, xp_archive_columns)
from starfm.gaia_archive import MAX_IDS_PER_CALL, PermanentArchiveError, TransientArchiveError
from starfm.errors import StarfmInputError
from starfm.tables import read_table
from starfm.xp_tables import GAIA_SOURCE_COLUMNS, GAIA_SOURCE_DTYPES

# the store's files (written by the mock-survey stage)
MANIFEST_FILE = "manifest.json"
GAIA_SOURCE_FILE = "gaia_source.h5"
XP_CONTINUOUS_FILE = "xp_continuous.h5"


class MockGaiaArchive:
    """The mock survey's archive: ``<directory>/manifest.json``, ``gaia_source.h5``, ``xp_continuous.h5``.

    The XP store holds the archive columns except the correlations (a missing band: NaN
    coefficients, ``n_parameters`` 0); a star's correlations are served from the real matrix its
    ``*_correlation_template`` names (group ``correlation_templates``), zeros without one. Each call serves its ids in the archive's format
    (``xp_format``; default: ``manifest.json``'s ``xp_format``, else ``votable``) and reads the
    file back as astroquery does. ``fail_first=k`` makes the first k calls raise
    :class:`TransientArchiveError`; ``fail_on_call={i: exc}`` raises ``exc`` on call i (0-based).
    """

    def __init__(self, directory, xp_format: str | None = None, fail_first: int = 0,
                 fail_on_call: dict[int, Exception] | None = None):
        self.directory = Path(directory)
        manifest_path = self.directory / MANIFEST_FILE
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
        path = self.directory / XP_CONTINUOUS_FILE
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
            templates = f.get("correlation_templates")
            for band in ("bp", "rp"):
                index = out.pop(f"{band}_correlation_template", None)
                if templates is not None and index is not None and band in templates:
                    lower = templates[band][:]
                    out[f"{band}_coefficient_correlations"] = np.where(
                        (index >= 0)[:, None], lower[np.clip(index, 0, None)], 0).astype(np.float32)
        return out

    # -- the GaiaArchive protocol
    def query_gaia_source(self, source_ids) -> Table:
        ids = self._before_call("gaia_source", source_ids)
        if self._gaia_source is None:
            self._gaia_source = read_table(self.directory / GAIA_SOURCE_FILE, GAIA_SOURCE_COLUMNS)
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
