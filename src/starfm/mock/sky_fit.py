"""Fitting the mock's sky model (:mod:`starfm.mock.sky_model`) on the fit half of the real library.

Offline: ``src/starfm/mock/data/build_sky_model.py`` calls :func:`fit_sky_model` on a library
run's source tables and stores the arrays in ``data/sky_model.npz``; the mock survey only reads
that file (so the data stages never import this module, its fits, XGBoost or SciPy).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from starfm.mock.sky_model import (DEGREE, EBV_INTRINSIC, EBV_TERMS, FIT_SEED, LABEL_COLUMNS,
                                   LABEL_RANGE_PERCENT, RIDGE, SPECTRAL_COLUMNS,
                                   TWOMASS_COLOUR_VARIANCE)


def fit_spectra(labels, ebv, y, y_err2, degree: int = DEGREE) -> dict:
    """Fit the spectral part on the fit half: ``labels`` (n, 4), ``ebv`` (n,) (finite), ``y``
    (n, 112) G-normalised coefficients and colours, ``y_err2`` (n, 112) their measurement
    variances. Returns the npz arrays: the forward model (all stars), the label clip range and
    the intrinsic covariance: the covariance of the residuals (winsorised at 3 robust sigma) of
    the stars with E(B-V) < :data:`EBV_INTRINSIC` less their mean measurement variance (diagonal; never more than 90 % of
    a column's variance: the errors are estimates), made positive semi-definite.

    Why low extinction only: the residuals grow with E(B-V) (the E(B-V) from A_K carries an
    error, and the law varies between sightlines), so over all stars they are 2-3 times those of
    low-extinction stars in bp0, rp0-rp3 and the colours; the mock applies its own extinction,
    with its own dust-map errors, on top of the intrinsic spectra."""
    from starfm.mock.sky_match import fit_forward_model, pairwise_covariance
    labels, ebv = np.asarray(labels, float), np.asarray(ebv, float)
    model = fit_forward_model(labels, ebv, y, SPECTRAL_COLUMNS, degree=degree, ridge=RIDGE,
                              ebv_terms=EBV_TERMS)
    low = ebv < EBV_INTRINSIC
    resid = model.resid_by_z[low]               # the fit rows in order (every label finite here)
    # winsorised at 3 robust sigma: the residuals have tails (binaries, bad photometry) that would
    # double a Gaussian's width (rp0: std 2.8e-3, 1.4826 MAD 1.3e-3)
    with np.errstate(invalid="ignore"):
        centre = np.nanmedian(resid, axis=0)
        width = 3 * 1.4826 * np.nanmedian(np.abs(resid - centre), axis=0)
        resid = np.clip(resid, centre - width, centre + width)
    cov = pairwise_covariance(resid)
    var = np.diag(cov).copy()
    noise = np.nanmean(np.where(np.isfinite(resid), np.asarray(y_err2)[low], np.nan), axis=0)
    cov[np.diag_indices_from(cov)] = np.maximum(var - noise, 0.1 * var)
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    cov = (v * np.clip(w, 0, None)) @ v.T
    lo, hi = np.nanpercentile(labels, LABEL_RANGE_PERCENT, axis=0)
    return {"names": np.array(SPECTRAL_COLUMNS), "label_mean": model.label_mean,
            "label_scale": model.label_scale, "degree": np.array(degree), "coef": model.coef,
            "intrinsic_cov": cov, "residual_var": var, "measurement_var": noise,
            "resid_scatter": model.resid_scatter, "n_fit": model.n_fit, "label_low": lo, "label_high": hi,
            "n_intrinsic": np.array(int(low.sum())), "ebv_terms": np.array(EBV_TERMS)}


def load_library_run(results: str | Path) -> dict:
    """Every library giant of a library run: source_id, labels, E(B-V), G, G-normalised
    coefficients and colours with their measurement variances, S/N and label errors."""
    from starfm import tokens
    from starfm.tables import match_rows, read_table

    results = Path(results)

    xp = read_table(results / "gaia" / "xp_continuous.h5",
                    ["source_id", "bp_coefficients", "rp_coefficients", "bp_coefficient_errors",
                     "rp_coefficient_errors"])
    sid = np.asarray(xp["source_id"], np.int64)

    def column(path, name):
        t = read_table(path, ["source_id", name])
        row = match_rows(np.asarray(t["source_id"], np.int64), sid)
        return np.where(row >= 0, np.asarray(t[name], float)[row], np.nan)

    labels_path = results / "catalogue" / "labels.h5"
    lab = {n: column(labels_path, n) for n in ("teff", "logg", "m_h", "alpha_m", "j", "h", "k", "snr",
                                               "teff_err", "logg_err", "m_h_err", "alpha_m_err")}
    g = column(results / "gaia" / "gaia_source.h5", "phot_g_mean_mag")
    ebv = np.exp(column(results / "dust" / "extinction.h5", "ln_ebv_median"))
    f_g = tokens.g_flux(g)[:, None]
    y = np.concatenate([np.asarray(xp["bp_coefficients"], float) / f_g,
                        np.asarray(xp["rp_coefficients"], float) / f_g,
                        (lab["j"] - lab["h"])[:, None], (lab["j"] - lab["k"])[:, None]], axis=1)
    e2 = np.concatenate([(np.asarray(xp["bp_coefficient_errors"], float) / f_g) ** 2,
                         (np.asarray(xp["rp_coefficient_errors"], float) / f_g) ** 2,
                         np.full((len(sid), 2), TWOMASS_COLOUR_VARIANCE)], axis=1)
    return {"source_id": sid, "labels": np.stack([lab[k] for k in LABEL_COLUMNS], 1),
            "ebv": ebv, "g": g, "y": y, "y_err2": e2, "snr": lab["snr"], "h": lab["h"],
            "errors": {k: lab[f"{k}_err"] for k in LABEL_COLUMNS}}


def fit_sky_model(lib: dict, realdata) -> tuple[dict, dict]:
    """The npz arrays and the fit's provenance from a loaded library (:func:`load_library_run`), ``realdata`` the folder of ../shared/realdata;
    rows of the check half are never read (tests/test_sky_model.py checks it)."""
    from starfm.mock import sky_population
    from starfm.mock.sky_match import SPLIT_SEED, check_half

    fit = ~check_half(lib["source_id"])
    ok_lab = np.isfinite(lib["labels"]).all(1)
    spec_rows = fit & ok_lab & np.isfinite(lib["ebv"]) & np.isfinite(lib["g"])
    arrays = fit_spectra(lib["labels"][spec_rows], lib["ebv"][spec_rows], lib["y"][spec_rows],
                         lib["y_err2"][spec_rows])
    rng = np.random.default_rng(FIT_SEED)
    pop_rows = fit & ok_lab
    gmm = sky_population.fit_gmm(lib["labels"][pop_rows], sky_population.GMM_COMPONENTS, rng)
    gmm["low"], gmm["high"] = lib["labels"][pop_rows].min(0), lib["labels"][pop_rows].max(0)
    arrays.update({f"population_{k}": v for k, v in gmm.items()})
    evolution = sky_population.fit_evolution(realdata)
    arrays.update({f"evolution_{k}": np.asarray(v) for k, v in evolution.items()})
    err_rows = pop_rows & np.isfinite(lib["snr"])
    errors = sky_population.fit_label_errors(lib["snr"][err_rows], lib["labels"][err_rows, 0],
                                             lib["labels"][err_rows, 2],
                                             {k: v[err_rows] for k, v in lib["errors"].items()})
    arrays.update({f"errors_{k}": np.asarray(v) for k, v in errors.items()})
    arrays.update({f"selection_{k}": v for k, v in fit_selection(lib["h"][pop_rows], lib["snr"][pop_rows]).items()})
    meta = {"split": f"fit half: starfm.mock.sky_match.check_half(source_id, seed={SPLIT_SEED}) False",
            "n_fit_spectra": int(spec_rows.sum()), "n_fit_population": int(pop_rows.sum()),
            "n_check_half_not_used": int((~fit).sum()),
            "gmm_components": sky_population.GMM_COMPONENTS, "seed": FIT_SEED}
    return arrays, meta


def fit_selection(h, snr) -> dict:
    """The library's apparent H (its quantiles: the mock places its stars at H drawn from them)
    and its S/N at given H: log10 S/N = a + b (H - 10) + N(0, s) (least squares), kept within the
    library's 0.5-99.5 % S/N range."""
    h, snr = np.asarray(h, float), np.asarray(snr, float)
    ok = np.isfinite(h) & np.isfinite(snr) & (snr > 0)
    x = np.stack([np.ones(ok.sum()), h[ok] - 10.0], 1)
    coef = np.linalg.lstsq(x, np.log10(snr[ok]), rcond=None)[0]
    resid = np.log10(snr[ok]) - x @ coef
    return {"h_quantiles": np.nanpercentile(h[np.isfinite(h)], np.linspace(0, 100, 201)),
            "snr_relation": np.array([coef[0], coef[1], resid.std()]),
            "snr_range": np.percentile(snr[ok], [0.5, 99.5])}
