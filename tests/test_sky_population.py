"""starfm.mock.sky_population: the fits recover known relations on seeded synthetic samples, and on
the real files the draws reproduce APOKASC-3's masses / RC fraction and the library's errors."""
from __future__ import annotations

import numpy as np
import pytest

from starfm.mock import sky_population as sp


def test_gmm_recovers_a_known_mixture_and_bounded_draws_stay_inside():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [4.0, 1.0]])
    covs = np.array([[[1.0, 0.6], [0.6, 1.0]], [[0.5, 0.0], [0.0, 0.2]]])
    truth = {"weights": np.array([0.3, 0.7]), "means": means, "covs": covs}
    x = sp.sample_gmm(truth, 6000, rng)
    fit = sp.fit_gmm(x, 2, np.random.default_rng(1))
    order = np.argsort(fit["means"][:, 0])
    # 6,000 draws: weight SE ~0.006, mean SE < 0.03, covariance SE < 0.03; tolerances ~3-4 SE
    np.testing.assert_allclose(fit["weights"][order], truth["weights"], atol=0.025)
    np.testing.assert_allclose(fit["means"][order], means, atol=0.1)
    np.testing.assert_allclose(fit["covs"][order], covs, atol=0.1)
    # the fit is at least as likely as the truth on its own sample (EM maximises it)
    assert fit["mean_log_likelihood"] >= sp.gmm_log_likelihood(truth, x).mean() - 1e-6
    low, high = np.array([-1.0, -np.inf]), np.array([4.0, 0.5])
    b = sp.sample_gmm(fit, 5000, np.random.default_rng(2), low, high)
    assert b.shape == (5000, 2) and np.all((b >= low) & (b <= high))
    # seeded: the same generator state gives the same draws
    np.testing.assert_array_equal(b, sp.sample_gmm(fit, 5000, np.random.default_rng(2), low, high))


def test_logistic_regression_recovers_known_coefficients():
    rng = np.random.default_rng(3)
    x = np.column_stack([np.ones(20000), rng.normal(size=20000), rng.normal(size=20000)])
    beta = np.array([-0.5, 2.0, -1.0])
    y = rng.random(20000) < 1 / (1 + np.exp(-x @ beta))
    # 20,000 rows: coefficient SE ~0.02-0.03; 0.1 is > 3 SE
    np.testing.assert_allclose(sp.fit_logistic(x, y), beta, atol=0.1)


def test_label_error_fit_recovers_a_known_relation_and_draws_scatter():
    rng = np.random.default_rng(4)
    n = 20000
    snr = 10 ** rng.uniform(1, 2.5, n)
    teff, m_h = rng.uniform(3600, 5400, n), rng.normal(-0.3, 0.4, n)
    coef = np.array([0.5, -0.6, 0.2, -0.1])
    log_err = coef[0] + coef[1] * np.log10(snr) + coef[2] * teff / 1000 + coef[3] * m_h
    err = 10 ** (log_err + rng.normal(0, 0.05, n))
    params = sp.fit_label_errors(snr, teff, m_h, {"teff": err, "logg": err / 100})
    # least squares on 20,000 rows with 0.05 dex scatter: SE < 0.005 per coefficient
    np.testing.assert_allclose(params["err_teff_coef"], coef, atol=0.02)
    np.testing.assert_allclose(params["err_logg_coef"][0], coef[0] - 2, atol=0.02)
    assert abs(params["err_teff_rms"] - 0.05) < 0.003
    drawn = sp.label_errors(params, snr, teff, m_h, np.random.default_rng(5))
    assert set(drawn) == {"teff", "logg", "c_fe", "n_fe"}
    # errors grow with falling S/N as the relation says: the S/N < 30 median over the S/N > 100 one
    low, high = snr < 30, snr > 100
    ratio = np.median(drawn["teff"][low]) / np.median(drawn["teff"][high])
    assert abs(ratio / (np.median(err[low]) / np.median(err[high])) - 1) < 0.05


def test_draw_mass_uses_the_relation_halo_and_clips():
    zero = np.zeros(21)
    lo, hi = np.array([3000.0, 0.0, -0.5, 0.0]), np.array([6000.0, 4.0, 0.5, 0.1])
    params = {f"evo_mass_{k}_{s}": v for s in ("rgb", "rc")
              for k, v in (("coef", zero), ("resid", np.zeros(1)), ("lo", lo), ("hi", hi))}
    params["evo_mass_coef_rgb"] = np.r_[np.log(1.2), np.zeros(20)]
    params["evo_mass_coef_rc"] = np.r_[np.log(1.5), np.zeros(20)]
    params["evo_mass_lin_rgb"] = np.r_[np.log(1.2), np.zeros(4)]
    params["evo_mass_lin_rc"] = np.r_[np.log(1.5), np.zeros(4)]
    params["evo_alpha_slope"], params["evo_alpha_max"] = -2.0, 0.25
    teff, logg = np.full(5, 4500.0), np.full(5, 2.5)
    m_h, alpha = np.array([0.0, 0.0, 0.0, -1.5, 0.0]), np.array([0.05, 0.05, 0.2, 0.3, 0.4])
    m = sp.draw_mass(params, teff, logg, m_h, alpha, np.array([False, True, False, False, False]),
                     np.random.default_rng(6))
    # in the box; RC; alpha beyond the box (slope x 0.1); halo; alpha beyond Miglio's 0.25, whose
    # capped mean 1.2 exp(-0.3) = 0.89 is below the 13.8 Gyr mass: the floor
    np.testing.assert_allclose(m[[0, 1, 2, 4]], [1.2, 1.5, 1.2 * np.exp(-2.0 * 0.1),
                                                 sp.oldest_mass(0.0, 0.4, False)], rtol=1e-12)
    assert sp.oldest_mass(0.0, 0.4, False) > 1.2 * np.exp(-0.3)
    assert 0.7 <= m[3] < 1.1          # halo: lnN(0.86, 0.05), 5 sigma above is 1.1


def test_attached_labels_at_apokasc3_own_labels_match_it(realdata_dir):
    a = sp.read_apokasc3(realdata_dir)
    params = sp.fit_evolution(realdata_dir)
    p = sp.red_clump_probability(params, a["teff"], a["logg"], a["m_h"])
    # measured: 99.1 % of APOKASC-3's states right at p > 0.5 (5-fold held out 98.9 %)
    assert np.mean((p > 0.5) == a["is_red_clump"]) > 0.97
    out = sp.attach_evolution(a["teff"], a["logg"], a["m_h"], a["alpha_m"], params,
                              np.random.default_rng(7))
    from starfm.mock.realism import robust_spread
    # measured (seeds 7 and 1): RC 46.8 / 46.5 % vs 46.8 %; mass median 1.273 / 1.273 vs 1.264,
    # robust spread 0.191 / 0.189 vs 0.194; tolerances ~2-3x the differences
    assert abs(out["is_red_clump"].mean() - a["is_red_clump"].mean()) < 0.02
    assert abs(np.median(out["mass"]) - np.median(a["mass"])) < 0.03
    assert abs(robust_spread(out["mass"]) / robust_spread(a["mass"]) - 1) < 0.15
    assert np.all((out["mass"] >= 0.7) & (out["mass"] <= 3.0))
    assert np.all((out["age_gyr"] >= 0.2) & (out["age_gyr"] <= 13.8))
    assert np.all((out["c_n"] >= -1.2) & (out["c_n"] <= 0.4))
    # the alpha slope from Miglio 2021's RGB agrees in sign and size with APOKASC-3's (-1.5)
    assert -2.5 < params["evo_alpha_slope"] < -0.8


def test_drawn_errors_at_the_library_s_n_match_its_medians(library_path):
    path = library_path
    from starfm.library import LibrarySettings, giants, one_row_per_star, read_library
    t = read_library(path)
    keep = one_row_per_star(t)
    t = {k: t[k][keep] for k in ("snr", "teff", "teff_err", "logg", "logg_err", "fe_h", "fe_h_err",
                                 "alpha_m", "alpha_m_err")}
    g = giants(t, LibrarySettings())
    t = {k: v[g].astype(float) for k, v in t.items()}
    ok = np.all([np.isfinite(v) for v in t.values()], axis=0)
    t = {k: v[ok] for k, v in t.items()}
    names = {"teff": "teff_err", "logg": "logg_err", "m_h": "fe_h_err", "alpha_m": "alpha_m_err"}
    params = sp.fit_label_errors(t["snr"], t["teff"], t["fe_h"], {k: t[c] for k, c in names.items()})
    drawn = sp.label_errors(params, t["snr"], t["teff"], t["fe_h"], np.random.default_rng(8))
    # measured on 23,293 giants: drawn/real median 1.03 (Teff), 1.03 (logg), 1.02 ([M/H]),
    # 1.08 ([alpha/M], the most skewed log residual); the brief's 15 %. The S/N < 50 over
    # S/N > 150 median ratio, real vs drawn: 0.65/0.67, 1.10/1.10, 1.32/1.32, 1.08/1.01: 10 %
    low, high = t["snr"] < 50, t["snr"] > 150
    for k, c in names.items():
        assert abs(np.median(drawn[k]) / np.median(t[c]) - 1) < 0.15, k
        real = np.median(t[c][low]) / np.median(t[c][high])
        assert abs(np.median(drawn[k][low]) / np.median(drawn[k][high]) / real - 1) < 0.1, k
    assert np.all(np.isfinite(drawn["c_fe"])) and abs(np.median(drawn["c_fe"]) / sp.C_FE_ERR - 1) < 0.15


def test_gmm_on_the_library_giants_and_their_attached_masses(library_path, realdata_dir):
    """The default-K mixture of the library giants reproduces their label percentiles, and the
    attached masses stay off the clips (the cubic mass fit's corners; the alpha-rich extrapolation)."""
    path = library_path
    from starfm.library import LibrarySettings, giants, one_row_per_star, read_library
    t = read_library(path)
    keep = one_row_per_star(t)
    t = {k: t[k][keep].astype(float) for k in ("teff", "logg", "fe_h", "alpha_m")}
    x = np.column_stack([t["teff"], t["logg"], t["fe_h"], t["alpha_m"]])
    x = x[giants(t, LibrarySettings()) & np.all(np.isfinite(x), axis=1)]
    gmm = sp.fit_gmm(x, sp.GMM_COMPONENTS, np.random.default_rng(0))
    s = sp.sample_gmm(gmm, 50000, np.random.default_rng(1), x.min(axis=0), x.max(axis=0))
    # measured: 1/16/50/84/99th percentiles within 30 K, 0.04 dex (logg), 0.04 dex ([M/H]),
    # 0.005 ([alpha/M]) of the library's; tolerances ~2x
    tol = np.array([60.0, 0.08, 0.08, 0.01])
    q = [1, 16, 50, 84, 99]
    assert np.all(np.abs(np.percentile(s, q, axis=0) - np.percentile(x, q, axis=0)) < tol)
    out = sp.attach_evolution(*s.T, sp.fit_evolution(realdata_dir), np.random.default_rng(2))
    # measured: 0.3 % at 0.7 Msun, 0.7 % at 3.0 Msun; RC 11.7 % (most library giants lie above
    # the clump, median logg 1.8); alpha 0.15-0.20, [M/H] > -1, logg 2.4-3.2: median 0.96 Msun
    # (Miglio 2021's giants at that [alpha/M]: 0.98)
    assert np.mean(out["mass"] <= 0.7) < 0.02 and np.mean(out["mass"] >= 3.0) < 0.02
    assert 0.05 < out["is_red_clump"].mean() < 0.2
    thick = (s[:, 3] > 0.15) & (s[:, 3] < 0.2) & (s[:, 2] > -1) & (s[:, 1] > 2.4) & (s[:, 1] < 3.2)
    assert abs(np.median(out["mass"][thick]) - 0.98) < 0.06


def test_fitted_parameters_survive_an_npz_round_trip(tmp_path, realdata_dir):
    """The fit tool stores the dicts in one .npz: draws from the reloaded dict are identical."""
    evo = sp.fit_evolution(realdata_dir)
    rng = np.random.default_rng(9)
    x = rng.normal(size=(500, 2))
    gmm = sp.fit_gmm(x, 3, rng)
    err = sp.fit_label_errors(10 ** rng.uniform(1, 2, 500), rng.uniform(4000, 5000, 500),
                              rng.normal(0, 0.2, 500), {"teff": rng.uniform(5, 20, 500)})
    np.savez(tmp_path / "p.npz", **evo, **gmm, **err)
    with np.load(tmp_path / "p.npz") as f:
        back = dict(f)
    teff, logg = rng.uniform(4000, 5200, 300), rng.uniform(1.0, 3.3, 300)
    m_h, alpha = rng.normal(-0.3, 0.4, 300), rng.uniform(-0.05, 0.35, 300)
    a = sp.attach_evolution(teff, logg, m_h, alpha, evo, np.random.default_rng(10))
    b = sp.attach_evolution(teff, logg, m_h, alpha, back, np.random.default_rng(10))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    np.testing.assert_array_equal(sp.sample_gmm(gmm, 50, np.random.default_rng(11)),
                                  sp.sample_gmm(back, 50, np.random.default_rng(11)))
    snr = 10 ** rng.uniform(1, 2, 300)
    e1 = sp.label_errors(err, snr, teff, m_h, np.random.default_rng(12))
    e2 = sp.label_errors(back, snr, teff, m_h, np.random.default_rng(12))
    for k in e1:
        np.testing.assert_array_equal(e1[k], e2[k])
