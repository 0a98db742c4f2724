"""The mock survey's XP rows: archive ``xp_continuous_mean_spectrum`` columns of noisy coefficients.

XP errors follow err_k^2 = a_k^2 F_G + b_k^2 F_G^2 fitted, per coefficient, to 2,000 real DR3
sources; noise drawn with covariance (error * standard_deviation)_j (error * standard_deviation)_k
C_jk (how GaiaXPy scales the covariance), C the coefficient correlation matrix of a real DR3 star
(``data/xp_correlations.npz``: the 20 stars of ``../shared/realdata/xp`` that carry both
bands' correlations) of the nearest G and BP-RP (distance in (G/2, BP-RP)): one Cholesky factor
per real matrix, the draws batched by matrix. The archive table then carries that matrix in
``*_coefficient_correlations`` (the store keeps a per-row index into the matrices,
``*_correlation_template``, and :class:`starfm.mock.archive.MockGaiaArchive` expands it).
``mock.xp_correlated_noise: false`` draws independent noise (and serves zero correlations).

``n_relevant_bases`` = 1 + the index of the last noisy coefficient with |c_k| / err_k > 3
(:data:`RELEVANCY_SNR`). On the 2,000 real sources of ``xp_spectral_lines/xp_continuous_combined_chunk0.fits``
(which carry coefficients, errors and n_relevant_bases; G from the synthetic photometry of their
coefficients) this rule gives the archive's value to a median |difference| of 1 base in both bands
(tests/test_mock_survey.py). Applied to the mock it reproduces the real median n_relevant_bases
against G (BP 22/17/10/9/8/7/6 against the real 24/17/11/9/7/6/4 from G < 11 to G 16-17; RP
within 2 bases from G = 11 to 17, though 9 against 22 brighter than G = 11, 30 real sources)
because the mock's coefficients carry the power real ones do (:mod:`starfm.mock.spectra`: the
projection's prior). ``mock.xp_relevancy: g`` restores the older draw from the real median
against G. Sources fainter than G = 17.65 (and a random 6 %) have no XP; 1 % lack one band.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from starfm.archive_formats import DR3_SOLUTION_ID, XP_BASIS_FUNCTION_ID, XP_STORE_DTYPES
from starfm.tokens import g_flux
from starfm.xp_tables import N_COEFFICIENTS
from starfm.xp_tables import relevant_bases

# xp_continuous.h5: the archive columns but the correlations, plus an index per band into the
# real correlation matrices stored in the group ``correlation_templates`` (-1: none)
XP_DTYPES = {**XP_STORE_DTYPES, "bp_correlation_template": "i2", "rp_correlation_template": "i2"}
CORRELATION_FILE = Path(__file__).resolve().parent / "data" / "xp_correlations.npz"
RELEVANCY_SNR = {"bp": 3.0, "rp": 3.0}     # n_relevant_bases: last coefficient with |c|/err above this, + 1
NO_XP_RANDOM_FRACTION = 0.06       # besides every G > 17.65 source
MISSING_BAND_FRACTION = 0.01

# XP coefficient errors: err_k^2 = a_k^2 F_G + b_k^2 F_G^2 (F_G in e-/s; photon noise plus a
# calibration floor), log10 a_k and log10 b_k fitted per coefficient to 2,000 real DR3 sources
# (xp_spectral_lines chunk0, G from their synthetic photometry)
XP_ERROR_LOG10 = {
    "bp": ([-1.90, -1.97, -1.95, -1.94, -1.93, -2.01, -2.03, -1.68, -1.95, -1.98, -1.93, -1.96, -1.98, -2.01,
            -2.00, -1.99, -2.04, -2.07, -2.07, -2.17, -2.03, -2.12, -2.09, -2.12, -2.12, -2.14, -2.18, -2.27,
            -2.19, -2.28, -2.24, -2.23, -2.28, -2.26, -2.31, -2.28, -2.30, -2.31, -2.32, -2.30, -2.35, -2.32,
            -2.31, -2.40, -2.41, -2.38, -2.38, -2.47, -2.51, -2.61, -2.63, -2.79, -2.80, -2.94, -3.31],
           [-4.37, -4.43, -4.41, -4.42, -4.42, -4.53, -4.55, -4.45, -4.65, -4.48, -4.48, -4.52, -4.49, -4.72,
            -4.68, -4.54, -4.56, -4.66, -4.60, -4.78, -4.55, -4.68, -4.62, -4.66, -4.65, -4.70, -4.79, -5.02,
            -4.80, -5.00, -4.92, -4.89, -5.09, -4.96, -5.11, -5.07, -5.11, -5.10, -5.13, -5.06, -5.22, -5.08,
            -4.96, -5.26, -5.15, -4.96, -4.98, -5.22, -5.21, -5.36, -5.35, -5.75, -5.48, -5.95, -6.29]),
    "rp": ([-1.97, -2.00, -2.00, -1.96, -1.98, -1.99, -1.98, -2.00, -2.00, -1.97, -2.02, -1.99, -2.11, -1.99,
            -2.00, -1.97, -1.97, -1.99, -1.97, -1.97, -2.07, -1.98, -2.02, -2.03, -2.01, -2.02, -2.04, -2.07,
            -2.07, -2.09, -2.09, -2.14, -2.11, -2.17, -2.19, -2.21, -2.21, -2.26, -2.26, -2.30, -2.31, -2.31,
            -2.28, -2.32, -2.34, -2.35, -2.41, -2.46, -2.49, -2.46, -2.54, -2.59, -2.63, -2.96, -3.21],
           [-4.87, -4.86, -4.89, -4.87, -4.90, -4.82, -4.89, -4.89, -4.92, -4.89, -4.97, -4.87, -5.05, -4.89,
            -4.88, -4.91, -4.93, -4.98, -5.01, -4.94, -5.00, -4.95, -4.98, -5.00, -4.93, -4.95, -4.88, -4.94,
            -5.02, -5.09, -4.99, -5.15, -5.03, -5.13, -5.14, -5.18, -5.23, -5.25, -5.33, -5.42, -5.53, -5.36,
            -5.26, -5.48, -5.42, -5.39, -5.55, -5.43, -5.47, -5.51, -5.55, -5.67, -5.73, -6.10, -6.40]),
}
XP_ERROR_SCATTER = 0.25            # log-normal scatter of a star's errors at fixed G (real: 0.22-0.4)
# median n_relevant_bases vs G (``mock.xp_relevancy: g``): the medians of the 2,000 real sources
# of xp_spectral_lines chunk0 in G bins < 11, 11-12, ..., 16-17, 17-17.65, at each bin's median G
N_RELEVANT_G = np.array([9.95, 11.49, 12.5, 13.54, 14.56, 15.58, 16.55, 17.32])
N_RELEVANT_MEDIAN = {"bp": np.array([23.5, 17, 11, 9, 7, 6, 4, 3.0]),
                     "rp": np.array([21.5, 7, 7, 6, 4, 4, 4, 3.0])}


@functools.lru_cache(maxsize=1)
def correlation_templates() -> dict:
    """The real correlation matrices: ``g``, ``bp_rp`` (n_t,), per band ``lower`` (n_t, 1485,
    archive order) and ``cholesky`` (n_t, 55, 55)."""
    d = np.load(CORRELATION_FILE)
    out = {"g": d["g"].astype(float), "bp_rp": d["bp_rp"].astype(float), "lower": {}, "cholesky": {}}
    tril = np.tril_indices(N_COEFFICIENTS, -1)
    for band in ("bp", "rp"):
        lower = d[band].astype(np.float32)
        mat = np.zeros((len(lower), N_COEFFICIENTS, N_COEFFICIENTS))
        mat[:, tril[0], tril[1]] = lower
        mat = mat + np.transpose(mat, (0, 2, 1)) + np.eye(N_COEFFICIENTS)[None]
        out["lower"][band] = lower
        out["cholesky"][band] = np.linalg.cholesky(mat)
    return out


def nearest_template(g, bp_rp) -> np.ndarray:
    """Index of the real correlation matrix of the nearest (G/2, BP-RP) for each star."""
    t = correlation_templates()
    d2 = ((np.asarray(g, float)[:, None] - t["g"][None, :]) / 2.0) ** 2 \
        + (np.asarray(bp_rp, float)[:, None] - t["bp_rp"][None, :]) ** 2
    return np.argmin(np.nan_to_num(d2, nan=np.inf), axis=1).astype(np.int16)


def correlated_normal(band: str, template: np.ndarray, rng) -> np.ndarray:
    """(n, 55) standard normal draws with correlation matrix ``template`` (index) of each row:
    z = L_t e, batched over the rows sharing a matrix."""
    chol = correlation_templates()["cholesky"][band]
    e = rng.standard_normal((len(template), N_COEFFICIENTS))
    z = np.empty_like(e)
    for t in np.unique(template):                       # <= 20 matrices: a loop over templates
        rows = template == t
        z[rows] = e[rows] @ chol[t].T
    return z


def xp_coefficient_errors(band: str, g_flux: np.ndarray) -> np.ndarray:
    """Median (no scatter) archive coefficient errors (n, 55) for G-band fluxes F_G [e-/s]."""
    log_a, log_b = XP_ERROR_LOG10[band]
    a, b = 10 ** np.asarray(log_a), 10 ** np.asarray(log_b)
    f = np.asarray(g_flux, dtype=float)[:, None]
    return np.sqrt(a ** 2 * f + b ** 2 * f ** 2)


def xp_continuous_rows(s: dict, bp_true, rp_true, rng, correlated: bool = True,
                       relevancy: str = "snr") -> dict:
    """Archive XP columns (:data:`XP_DTYPES`) of a chunk's stars ``s`` from their noise-free
    coefficients, plus ``_has_xp`` (whether the archive has a spectrum of the star).
    ``correlated``: noise with real coefficient correlations; ``relevancy``: ``snr`` (the
    signal-to-noise rule) or ``g`` (drawn from the real median against G)."""
    n = s["n"]
    g = s["gaia"]["phot_g_mean_mag"].astype(float)
    f_g = g_flux(g)
    has_xp = (g < 17.65) & (rng.random(n) >= NO_XP_RANDOM_FRACTION) & np.isfinite(g)
    missing = np.where(rng.random(n) < MISSING_BAND_FRACTION, rng.integers(1, 3, n), 0)  # 1: no BP, 2: no RP
    cols = {"source_id": s["source_id"], "solution_id": np.full(n, DR3_SOLUTION_ID, dtype=np.int64)}
    for i, (band, true) in enumerate((("bp", bp_true), ("rp", rp_true))):
        absent = missing == i + 1
        scatter = np.exp(rng.normal(0, XP_ERROR_SCATTER, (n, 1)) + rng.normal(0, 0.1, (n, N_COEFFICIENTS)))
        err = xp_coefficient_errors(band, f_g) * scatter
        std = 1.0 + rng.gamma(2.0, 0.04, n)
        if correlated:
            template = nearest_template(g, s["gaia"]["bp_rp"])
            z = correlated_normal(band, template, rng)
        else:
            template = np.full(n, -1, np.int16)
            z = rng.standard_normal(true.shape)
        coef = true + err * std[:, None] * z
        if relevancy == "snr":
            n_rel = np.clip(relevant_bases(coef, err, RELEVANCY_SNR[band]), 2, 55)
        else:
            med = np.interp(g, N_RELEVANT_G, N_RELEVANT_MEDIAN[band])
            n_rel = np.round(med * np.exp(rng.normal(0, 0.35, n)))
            tail = rng.random(n) < 0.1
            n_rel[tail] = rng.integers(10, 56, tail.sum())
            n_rel = np.clip(n_rel, 2, 55)
        cols[f"{band}_correlation_template"] = np.where(absent, -1, template).astype(np.int16)
        n_meas = np.clip(np.round(np.exp(rng.normal(np.log(1500 if band == "bp" else 2000), 0.4, n))), 300, 30000)
        dof = n_meas - N_COEFFICIENTS
        cols[f"{band}_basis_function_id"] = np.where(absent, 0, XP_BASIS_FUNCTION_ID[band]).astype(np.int16)
        cols[f"{band}_degrees_of_freedom"] = np.where(absent, 0, dof).astype(np.int16)
        cols[f"{band}_n_parameters"] = np.where(absent, 0, N_COEFFICIENTS).astype(np.int16)
        cols[f"{band}_n_measurements"] = np.where(absent, 0, n_meas).astype(np.int16)
        cols[f"{band}_n_rejected_measurements"] = np.where(
            absent, 0, rng.binomial(n_meas.astype(np.int64), 0.02)).astype(np.int16)
        cols[f"{band}_standard_deviation"] = np.where(absent, np.nan, std).astype(np.float32)
        cols[f"{band}_chi_squared"] = np.where(absent, np.nan, dof * std ** 2).astype(np.float32)
        cols[f"{band}_coefficients"] = np.where(absent[:, None], np.nan, coef)
        cols[f"{band}_coefficient_errors"] = np.where(absent[:, None], np.nan, err).astype(np.float32)
        cols[f"{band}_n_relevant_bases"] = np.where(absent, 0, n_rel).astype(np.int16)
        cols[f"{band}_relative_shrinking"] = np.where(
            absent, np.nan, 1 - 10 ** rng.uniform(-7, -4.5, n)).astype(np.float32)
    cols["_has_xp"] = has_xp
    return cols
