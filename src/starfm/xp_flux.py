"""Gaia XP coefficients to flux, in one place: GaiaXPy's calibrated flux.

:func:`xp_flux` is the one path from BP/RP coefficients to sampled flux (W m^-2 nm^-1) through
GaiaXPy's bases: ``gaiaxpy.calibrate`` is linear in the coefficients (merge weights included, no
truncation), so calibrating the 110 unit coefficient vectors once per wavelength grid gives a
(110, n_wl) matrix (:func:`xp_design_matrix`) and any number of spectra is one matrix product.
The mock survey (:mod:`starfm.mock.spectra`, which also projects model spectra on
:func:`default_basis`) and the extinction curve (:mod:`starfm.extinction_curve`) both use it.
(The G-band flux F_G that the XP tokens are divided by is :func:`starfm.tokens.g_flux`.)
"""
from __future__ import annotations

import contextlib
import functools
import io

import numpy as np

from starfm.tokens import N_XP

XP_WAVELENGTH_NM = np.arange(336.0, 1020.0 + 1e-9, 2.0)   # GaiaXPy's default calibrate grid


@contextlib.contextmanager
def _gaiaxpy():
    """Import GaiaXPy inside this (importing it sets text.usetex = True for every later figure)."""
    import matplotlib
    with matplotlib.rc_context():
        yield


@functools.lru_cache(maxsize=1)
def default_basis() -> dict:
    """GaiaXPy's default calibration, as ``calibrate`` uses it when given no sampling.

    ``wavelength`` (343,) nm (336-1020 nm in 2 nm steps); per band ``design`` (55, 343), the
    basis functions on that grid, and ``merge`` (343,), the BP/RP merge weights: flux =
    merge_bp (c_bp @ design_bp) + merge_rp (c_rp @ design_rp).
    """
    with _gaiaxpy():
        import gaiaxpy.calibrator.calibrator as calibrator

    generate = getattr(calibrator, "__generate_xp_matrices_and_merge")
    design_matrices, merge = generate("calibrator", None, "v375wi", "v142r")
    return {"wavelength": np.asarray(design_matrices["bp"].get_sampling_grid(), dtype=float),
            "design": {b: np.asarray(design_matrices[b].get_design_matrix(), dtype=float) for b in ("bp", "rp")},
            "merge": {b: np.asarray(merge[b], dtype=float) for b in ("bp", "rp")}}


@functools.lru_cache(maxsize=1)
def _default_matrix() -> np.ndarray:
    basis = default_basis()
    return np.concatenate([basis["merge"][b][None, :] * basis["design"][b] for b in ("bp", "rp")])


@functools.lru_cache(maxsize=4)
def _design_cached(wavelength_key: tuple) -> np.ndarray:
    import pandas as pd
    with _gaiaxpy():
        from gaiaxpy import calibrate

    n = N_XP
    unit = np.eye(2 * n)
    rows = {"source_id": np.arange(2 * n)}
    for j, band in enumerate(("bp", "rp")):
        rows[f"{band}_coefficients"] = list(unit[:, j * n:(j + 1) * n])
        rows[f"{band}_coefficient_errors"] = [np.ones(n)] * (2 * n)
        rows[f"{band}_coefficient_correlations"] = [np.zeros(n * (n - 1) // 2)] * (2 * n)
        rows[f"{band}_n_parameters"] = np.full(2 * n, n)
        rows[f"{band}_standard_deviation"] = np.ones(2 * n)
    # silence GaiaXPy's "Reading input DataFrame..." prints (its progress bar, bound to the
    # process's stdout at import, still shows once per grid)
    with contextlib.redirect_stdout(io.StringIO()):
        out, _ = calibrate(pd.DataFrame(rows), sampling=np.asarray(wavelength_key), save_file=False)
    return np.stack(out["flux"].to_numpy()).astype(float)


def xp_design_matrix(wavelength_nm=None) -> np.ndarray:
    """(110, n_wl) matrix M with ``gaiaxpy.calibrate`` flux = concat(bp, rp coefficients) @ M.

    ``wavelength_nm`` None: GaiaXPy's default calibration (:func:`default_basis`, what
    ``calibrate(df)`` uses). A grid: ``calibrate(df, sampling=grid)``, built by calibrating the
    110 unit coefficient vectors (calibrate is linear in the coefficients, merge weights
    included; no truncation), once per grid. The two differ even on the default grid: the default
    design matrices are GaiaXPy's stored tables, a given sampling has the bases evaluated afresh
    (up to ~5e-4 of the mean flux apart).
    """
    if wavelength_nm is None:
        return _default_matrix()
    return _design_cached(tuple(np.asarray(wavelength_nm, dtype=float).tolist()))


def xp_flux(bp, rp, wavelength_nm=None) -> np.ndarray:
    """GaiaXPy calibrated flux (n, n_wl) of BP and RP coefficients (n, 55); NaN coefficients = 0."""
    coef = np.concatenate([np.atleast_2d(bp), np.atleast_2d(rp)], axis=1)
    return np.nan_to_num(coef) @ xp_design_matrix(wavelength_nm)


# ---------------------------------------------------------------------------- photometry
@functools.lru_cache(maxsize=1)
def _dr3_vega():
    """GaiaXPy's Gaia DR3 Vega G/BP/RP sampling vectors (per band (55, 3)) and zero points (3,)."""
    with _gaiaxpy():
        from gaiaxpy import PhotometricSystem
    system = PhotometricSystem.Gaia_DR3_Vega.value
    sampling = system.load_xpsampling_from_xml()
    return ({b: np.asarray(sampling[b], dtype=np.float64) for b in ("bp", "rp")},
            np.asarray(system.get_zero_points(), dtype=np.float64))


def synthetic_photometry(bp: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """(n, 3) Gaia DR3 Vega G, BP, RP [mag] synthesised from XP coefficients (NaN where a band is
    missing or the flux is not positive): GaiaXPy's ``generate`` photometry, vectorised. The one
    synthetic photometry of the project: ``predict`` (G of stars without one) and the mock
    survey (its G/BP/RP) both call it."""
    sampling, zero_points = _dr3_vega()
    flux = (np.atleast_2d(np.asarray(bp, np.float64)) @ sampling["bp"]
            + np.atleast_2d(np.asarray(rp, np.float64)) @ sampling["rp"])
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = -2.5 * np.log10(flux) + zero_points
    return np.where(flux > 0, mag, np.nan)
