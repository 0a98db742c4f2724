"""Rebuild ``xp_correlations.npz``: real Gaia DR3 XP coefficient correlation matrices, one per star.

Source: every star of ``../shared/realdata/xp`` whose archive row carries finite
``bp_coefficient_correlations`` and ``rp_coefficient_correlations`` (GaiaXPy test files, the
GaiaXPcorrection example, the Weiler et al. 2023 examples, the astroquery DataLink products;
see ``../shared/realdata/README.md``). Stored per star: ``source_id``, G and BP-RP (GaiaXPy's
synthetic photometry of its coefficients, :func:`starfm.xp_flux.synthetic_photometry`) and the
1485 lower-triangle correlations of each band (the archive's order, float32).

Run from the repository root: ``PYTHONPATH=src python src/starfm/mock/data/build_xp_correlations.py``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]
OUT = Path(__file__).resolve().parent / "xp_correlations.npz"


def main() -> int:
    sys.path.insert(0, str(ROOT.parent / "shared" / "realdata"))
    import load_realdata

    from starfm.xp_flux import synthetic_photometry

    u = load_realdata.xp_union(load_realdata.load_all())

    def good(v, size):
        return isinstance(v, np.ndarray) and v.size == size and np.isfinite(v).all()

    keep = (u["bp_coefficient_correlations"].apply(lambda v: good(v, 1485))
            & u["rp_coefficient_correlations"].apply(lambda v: good(v, 1485))
            & u["bp_coefficients"].apply(lambda v: good(v, 55)) & u["rp_coefficients"].apply(lambda v: good(v, 55)))
    u = u[keep]
    bp = np.stack(u["bp_coefficients"].to_numpy()).astype(float)
    rp = np.stack(u["rp_coefficients"].to_numpy()).astype(float)
    mags = synthetic_photometry(bp, rp)
    np.savez_compressed(OUT, source_id=u["source_id"].to_numpy(np.int64), g=mags[:, 0], bp_rp=mags[:, 1] - mags[:, 2],
                        bp=np.stack(u["bp_coefficient_correlations"].to_numpy()).astype(np.float32),
                        rp=np.stack(u["rp_coefficient_correlations"].to_numpy()).astype(np.float32))
    print(f"{OUT}: {len(u)} stars, G {mags[:, 0].min():.1f}-{mags[:, 0].max():.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
