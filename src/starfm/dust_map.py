"""The Combined19 3-D dust map: mwdust's file format, and a vectorised evaluator.

``combined19/combine19.h5`` holds ``/pixel_info`` (structured: ``nside`` uint32,
``healpix_index`` uint64, nested HEALPix, several resolutions) and ``/best_fit``
(n_pixels x 120 float64, E(B-V) on the SFD scale at distance moduli
``linspace(4, 18.875, 120)``), as written by mwdust's ``combine_dustmaps19``.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from starfm.io import atomic_path

DISTMODS = np.linspace(4.0, 18.875, 120)
PIXEL_INFO_DTYPE = np.dtype([("nside", "uint32"), ("healpix_index", "uint64")])


def combined19_path(dust_dir: str | os.PathLike) -> Path:
    """Where mwdust looks for the map under ``DUST_DIR``."""
    return Path(dust_dir) / "combined19" / "combine19.h5"


def write_combined19(path: str | os.PathLike, nside: np.ndarray, healpix_index: np.ndarray,
                     best_fit: np.ndarray) -> None:
    """Write a map in mwdust's exact Combined19 layout (atomically)."""
    nside = np.asarray(nside)
    healpix_index = np.asarray(healpix_index)
    best_fit = np.asarray(best_fit, dtype="float64")
    if best_fit.shape != (len(nside), len(DISTMODS)) or len(healpix_index) != len(nside):
        raise ValueError(f"best_fit must be ({len(nside)}, {len(DISTMODS)}), got {best_fit.shape}")
    pix_info = np.empty(len(nside), dtype=PIXEL_INFO_DTYPE)
    pix_info["nside"] = nside
    pix_info["healpix_index"] = healpix_index
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("pixel_info", data=pix_info)
            f.create_dataset("best_fit", data=best_fit)
