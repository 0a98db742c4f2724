"""The Python API: ``model = starfm.load("results/model/model.pt")`` and ask it questions.

    import starfm
    model = starfm.load("results/model/model.pt")
    cat = model.predict("XpContinuousMeanSpectrum_000000-003111.csv.gz", gaia_source="gs.fits")
    spec = model.generate(teff=4800, logg=2.5, m_h=0.0, mass=1.2, age=4.0, ebv=0.1)
    rp = model.inpaint("xp.fits", source_band="bp")

Every method returns a dict of numpy columns (one row per star), the same columns the command
lines write (``starfm predict`` / ``generate`` / ``inpaint``). Tokens are built by
``starfm.tokenise.tokenise``, the function ``assemble`` builds the training set with. The raw
token-level model is ``model.fm`` (:class:`starfm.inference.StarFM`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from starfm.inference import StarFM


class Model:
    """A trained starfm model with predict / generate / inpaint on catalogue columns."""

    def __init__(self, fm: StarFM, path=None):
        self.fm = fm
        self.path = path

    def __repr__(self) -> str:
        return f"starfm.Model({str(self.path)!r}, size={self.fm.info.get('size')!r})"

    def _chunks(self, xp, chunk_rows):
        """XP input as (xp columns, extra columns) chunks: a file path or a table of columns."""
        from starfm.catalogue_io import _parse, iter_xp_chunks
        if isinstance(xp, (str, Path)):
            yield from iter_xp_chunks(xp, chunk_rows)
            return
        if hasattr(xp, "colnames"):  # astropy Table
            xp = {c: xp[c] for c in xp.colnames}
        yield _parse({str(k).lower(): v for k, v in dict(xp).items()}, "XP table")

    def _side(self, table, what, wanted):
        from starfm.predict import SideTable
        if table is None or isinstance(table, SideTable):
            return table
        return SideTable(table, what, wanted)

    def predict(self, xp, gaia_source=None, photometry=None, **settings) -> dict[str, np.ndarray]:
        """Parameters for every source of ``xp`` (path or columns incl. ``source_id``); optional
        gaia_source / 2MASS tables (paths). ``settings``: fields of ``PredictSettings``."""
        from starfm.predict import (GAIA_COLUMNS, PHOTOMETRY_ALIASES, PredictSettings,
                                    _check_tokens, default_inputs, model_records, predict_chunk)
        s = PredictSettings.from_json(settings)
        inputs = list(s.inputs) if s.inputs is not None else default_inputs()
        _check_tokens(inputs, self.fm, "inputs")
        gaia = self._side(gaia_source, "gaia_source", {c: (c,) for c in GAIA_COLUMNS})
        phot = self._side(photometry, "2MASS photometry", PHOTOMETRY_ALIASES)
        records = model_records(self.fm, s)     # the model's training cuts, tokens, coverage
        parts = [predict_chunk(self.fm, x, e, gaia, phot, s, inputs, records)
                 for x, e in self._chunks(xp, s.chunk_rows) if len(x["source_id"])]
        return _concat(parts)

    def generate(self, g_mag=None, **params) -> dict[str, np.ndarray]:
        """XP coefficients and GaiaXPy-sampled spectrum (``wavelength``) for parameters teff,
        logg, m_h, mass, age [Gyr], ebv (scalars or arrays; any subset)."""
        from starfm.generate import generate, wavelength_grid
        out = generate(self.fm, params, g_mag)
        out["wavelength"] = wavelength_grid()
        return out

    def inpaint(self, xp, source_band: str = "bp", gaia_source=None, **settings) -> dict[str, np.ndarray]:
        """The other band's coefficients predicted from ``source_band`` ('bp' or 'rp')."""
        from starfm.generate import inpaint_chunk
        from starfm.predict import GAIA_COLUMNS, PredictSettings
        s = PredictSettings.from_json(settings)
        gaia = self._side(gaia_source, "gaia_source", {c: (c,) for c in GAIA_COLUMNS})
        parts = [inpaint_chunk(self.fm, x, e, gaia, None, s, source_band)
                 for x, e in self._chunks(xp, s.chunk_rows) if len(x["source_id"])]
        return _concat(parts)


def _concat(parts: list[Mapping]) -> dict[str, np.ndarray]:
    from starfm.errors import StarfmInputError
    if not parts:
        raise StarfmInputError("the XP table is empty")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def load(path, device: str = "cpu") -> Model:
    """Load ``model.pt`` (written by ``starfm train``) onto ``device`` (cpu, cuda, auto)."""
    return Model(StarFM.load(path, device=device), path)
