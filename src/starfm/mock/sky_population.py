"""The mock's giants drawn as the real sky's: a label population fitted on the library's giants,
the labels real giants carry with them (state, mass, age, [C/N]) fitted on the asteroseismic
samples, and ASPCAP-like label errors fitted on the library. Pure numpy, every draw seeded by the
caller's ``np.random.Generator``.

Fits return plain dicts of numpy arrays / floats (storable in one ``.npz``: the integrator's fit
tool calls the ``fit_*`` functions once, offline); the draw functions take those dicts.

- :func:`fit_gmm` / :func:`sample_gmm` / :func:`gmm_log_likelihood`: a full-covariance Gaussian
  mixture (EM) of the library giants' (Teff, logg, [M/H], [alpha/M]). :data:`GMM_COMPONENTS` is
  chosen by held-out log-likelihood on the library (its comment gives the numbers).
- :func:`fit_evolution` / :func:`attach_evolution`: P(red clump | Teff, logg, [M/H]) (logistic
  regression by IRLS on APOKASC-3), ln M = cubic in (Teff, logg, [M/H]) + linear in [alpha/M]
  per state (APOKASC-3; linear outside APOKASC-3's box of labels) + its resampled residuals, with
  the slope in [alpha/M] beyond APOKASC-3's alpha-poor range from Miglio et al. (2021), a halo
  below [M/H] = -1 and no mean mass below the 13.8 Gyr one; age by
  :func:`starfm.mock.population.isochrone_age`, [C/N] by
  :data:`starfm.mock.population.CN_RELATION`.
- :func:`fit_label_errors` / :func:`label_errors`: log10(error) linear in log10(S/N), Teff/1000
  and [M/H] per label, with log-normal scatter, fitted on the library's ASPCAP errors.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from starfm.mock import population
from starfm.mock.seismic import MIGLIO2021

GMM_COLUMNS = ("teff", "logg", "m_h", "alpha_m")
# K of the label GMM: held-out mean log-likelihood per star on the library's 23,293 giants with
# finite (Teff, logg, [Fe/H], [alpha/M]) (fit on a random 80 %, scored on the other 20 %, two
# seeds): K = 4: -6.94/-6.86, 8: -6.52/-6.48, 12: -6.34/-6.32, 16: -6.22/-6.23, 20: -6.16/-6.17,
# 24: -6.13/-6.13, 32: -6.05/-6.06, 40: -6.02, 48: -6.01, 64: -5.96 (one seed). Beyond 32 the
# gain per added component falls ~4x and the fits grow components of weight 1e-4 (~2 stars: spikes
# on repeated ASPCAP values) while the smallest at K = 32 holds 1 % of the stars; 32 fits in
# ~15 s on one core and reproduces the library's 1-99th label percentiles (tests).
GMM_COMPONENTS = 32


# ----------------------------------------------------------------------------- Gaussian mixture
def _log_gauss(x: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """(n, K) log N(x_i | mean_k, cov_k) through Cholesky factors."""
    n, d = x.shape
    out = np.empty((n, len(means)))
    for k in range(len(means)):
        chol = np.linalg.cholesky(covs[k])
        z = np.linalg.solve(chol, (x - means[k]).T)                     # (d, n)
        logdet = 2.0 * np.log(np.diag(chol)).sum()
        out[:, k] = -0.5 * (np.sum(z * z, axis=0) + logdet + d * np.log(2 * np.pi))
    return out


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True))).squeeze(axis)


def gmm_log_likelihood(gmm: dict, x) -> np.ndarray:
    """(n,) log density of each row of ``x`` under the mixture ``gmm``."""
    x = np.atleast_2d(np.asarray(x, dtype=float))
    return _logsumexp(np.log(gmm["weights"]) + _log_gauss(x, gmm["means"], gmm["covs"]), axis=1)


def _kmeans_pp(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds (rows of ``x``, which the caller has standardised)."""
    centres = [x[rng.integers(len(x))]]
    d2 = np.sum((x - centres[0]) ** 2, axis=1)
    for _ in range(1, k):
        centres.append(x[rng.choice(len(x), p=d2 / d2.sum())])
        d2 = np.minimum(d2, np.sum((x - centres[-1]) ** 2, axis=1))
    return np.array(centres)


def fit_gmm(x, n_components: int, rng: np.random.Generator, n_iter: int = 200,
            reg: float = 1e-6, tol: float = 1e-6) -> dict:
    """Full-covariance Gaussian mixture of the rows of ``x`` (n, d) by EM.

    Seeds: k-means++ on the standardised columns (from ``rng``), each row then given to its nearest
    seed for the first M step. ``reg`` x each column's variance is added to every covariance's
    diagonal (the columns differ in scale by 1e5: Teff in K, [alpha/M] in dex). Stops when the mean
    log-likelihood per row gains less than ``tol`` in an iteration, or after ``n_iter``.
    Returns ``{"weights": (K,), "means": (K, d), "covs": (K, d, d), "mean_log_likelihood": float,
    "n_iter": int}``."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise ValueError("fit_gmm: x must be a finite (n, d) array")
    n, d = x.shape
    mu0, sd0 = x.mean(axis=0), x.std(axis=0)
    sd0 = np.where(sd0 > 0, sd0, 1.0)
    z = (x - mu0) / sd0
    seeds = _kmeans_pp(z, n_components, rng)
    nearest = np.argmin(((z[:, None, :] - seeds[None]) ** 2).sum(axis=2), axis=1)
    resp = np.eye(n_components)[nearest]
    ridge = reg * np.diag(sd0 ** 2)
    last = -np.inf
    it = 0
    for it in range(1, n_iter + 1):
        # M step
        nk = resp.sum(axis=0) + 1e-10
        weights = nk / n
        means = resp.T @ x / nk[:, None]
        covs = np.empty((n_components, d, d))
        for k in range(n_components):
            dx = x - means[k]
            covs[k] = (resp[:, k, None] * dx).T @ dx / nk[k] + ridge
        # E step
        logp = np.log(weights) + _log_gauss(x, means, covs)
        norm = _logsumexp(logp, axis=1)
        resp = np.exp(logp - norm[:, None])
        ll = float(norm.mean())
        if ll - last < tol:
            break
        last = ll
    return {"weights": weights, "means": means, "covs": covs, "mean_log_likelihood": ll, "n_iter": it}


def sample_gmm(gmm: dict, n: int, rng: np.random.Generator, low=None, high=None,
               max_rounds: int = 1000) -> np.ndarray:
    """(n, d) draws from the mixture. With ``low``/``high`` (per column; None or +-inf = open),
    rows outside are redrawn (vectorised rejection) until all lie inside."""
    weights = np.asarray(gmm["weights"], dtype=float)
    means, covs = np.asarray(gmm["means"], float), np.asarray(gmm["covs"], float)
    d = means.shape[1]
    chol = np.linalg.cholesky(covs)
    lo = np.full(d, -np.inf) if low is None else np.asarray(low, dtype=float)
    hi = np.full(d, np.inf) if high is None else np.asarray(high, dtype=float)

    def draw(m):
        comp = rng.choice(len(weights), size=m, p=weights / weights.sum())
        e = rng.standard_normal((m, d))
        return means[comp] + np.einsum("nij,nj->ni", chol[comp], e)

    out = draw(n)
    bad = np.flatnonzero(~np.all((out >= lo) & (out <= hi), axis=1))
    for _ in range(max_rounds):
        if bad.size == 0:
            return out
        out[bad] = draw(bad.size)
        bad = bad[~np.all((out[bad] >= lo) & (out[bad] <= hi), axis=1)]
    raise ValueError(f"sample_gmm: {bad.size} rows still outside the bounds after {max_rounds} "
                     "rounds (bounds exclude almost all of the mixture)")


# ----------------------------------------------------------------------------- attached labels
MASS_RANGE = (0.7, 3.0)              # Msun, as starfm.mock.population.draw_stars
# Below this [M/H] a giant is a halo star: ln M ~ N(ln 0.86, 0.05) as the parametric population's
# halo (Miglio et al. 2021's 8 giants with [Fe/H] < -1 have median mass 0.89; APOKASC-3 gold has
# none below -0.45).
HALO_M_H = -1.0
HALO_LN_MASS = (float(np.log(0.86)), 0.05)


def _scaled(teff, logg, m_h):
    return np.asarray(teff, float) / 1000.0 - 4.7, np.asarray(logg, float) - 2.45, np.asarray(m_h, float)


def _rc_features(teff, logg, m_h) -> np.ndarray:
    """Logistic-regression features of P(red clump): 1, g, g^2, t, z, t z, t g, t^2
    (t = Teff/1000 - 4.7, g = logg - 2.45, z = [M/H]). At fixed logg and [M/H] the clump is hotter
    than the RGB: the cross terms follow the RGB's Teff(logg, [M/H]). 5-fold held-out accuracy
    (p > 0.5) on APOKASC-3: 1, g, g^2 alone 85.0 %; + t, z 98.83 %; these 98.94 %; + g z, g^3
    98.99 % (the differences are within one standard error, 0.13 %)."""
    t, g, z = _scaled(teff, logg, m_h)
    return np.column_stack([np.ones_like(t), g, g * g, t, z, t * z, t * g, t * t])


N_LINEAR = 5                          # the first columns of _mass_features: 1, a, t, g, z


def _mass_features(teff, logg, m_h, alpha_m) -> np.ndarray:
    """ln M regression features: 1, a, and all monomials of (t, g, z) up to degree 3 (21 columns).
    Cubic, because on APOKASC-3 the 5-fold cross-validated robust residual in ln M falls from
    0.069 (RGB) / 0.073 (RC) with a quadratic to 0.064 / 0.067 with a cubic, and a quartic gains
    nothing more (0.065 / 0.066)."""
    from starfm.mock.sky_model import poly_features
    t, g, z = _scaled(teff, logg, m_h)
    monomials = poly_features(np.column_stack([t, g, z]), 3)       # 1, t, g, z, t^2, ...
    return np.column_stack([monomials[:, 0], np.asarray(alpha_m, float), monomials[:, 1:]])


def fit_logistic(features: np.ndarray, y: np.ndarray, n_iter: int = 50, ridge: float = 1e-6) -> np.ndarray:
    """Logistic-regression coefficients by iteratively reweighted least squares (Newton), with a
    tiny ridge (``ridge`` x n on the diagonal) against separable corners."""
    x = np.asarray(features, float)
    y = np.asarray(y, float)
    beta = np.zeros(x.shape[1])
    for _ in range(n_iter):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
        w = np.clip(p * (1 - p), 1e-9, None)
        hess = (x * w[:, None]).T @ x + ridge * len(y) * np.eye(x.shape[1])
        step = np.linalg.solve(hess, x.T @ (y - p) - ridge * len(y) * beta)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            break
    return beta


def _lstsq(x, y):
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return coef, float(np.sqrt(np.mean((y - x @ coef) ** 2)))


def read_apokasc3(realdata_dir) -> dict:
    """APOKASC-3 gold (alpha-poor) giants in the mock's column names (starfm.mock.seismic)."""
    from starfm.mock.seismic import real_samples
    return real_samples(realdata_dir)["apokasc3"]


def fit_evolution(realdata_dir) -> dict:
    """Fit state, mass relations on the real asteroseismic samples of ``realdata_dir``.

    - ``evo_rc_coef``: logistic P(RC | Teff, logg, [M/H]) (:func:`_rc_features`) on APOKASC-3's
      6,603 gold giants (47 % RC); ``evo_rc_logg`` = the min/max logg of its RC stars
      (2.20-2.97): P = 0 outside;
    - ``evo_mass_coef_{rgb,rc}``, ``evo_mass_rms_{rgb,rc}``: least squares ln M on
      :func:`_mass_features` per state on APOKASC-3 and the residual rms (0.083 RGB, 0.085 RC);
      ``evo_mass_resid_{rgb,rc}``: the fit's residuals, which :func:`draw_mass` resamples as the
      scatter: they are heavy-tailed (robust sigma 0.064 / 0.066). Measured at APOKASC-3's own
      labels, information ratio of mass | Teff, logg, [M/H] (starfm.mock.seismic), real 0.52:
      quadratic mean + Gaussian rms scatter 0.71, quadratic + resampled residuals 0.63, this
      cubic + resampled residuals 0.57 (with [C/N] added: 0.51 vs real 0.44); XGBoost still finds
      a little more structure in the real masses;
      ``evo_mass_lin_{rgb,rc}``: the linear fit (1, [alpha/M], Teff, logg, [M/H]), used where a
      star's Teff, logg or [M/H] lies outside the box below (on the library's alpha-poor giants
      with logg > 1.5 and [M/H] > -0.5, 33 % are outside the RGB box, mostly hotter than 5030 K:
      the cubic gave 1 % of them > 20 Msun, the linear fit a 99th percentile of 2.7 Msun);
      ``evo_mass_lo/hi_{rgb,rc}``: the 0.5/99.5 percentiles of (Teff, logg, [M/H], [alpha/M]) per
      state, to which a star's inputs are clipped before the regression;
    - ``evo_alpha_slope``: d ln M / d [alpha/M] at fixed logg and [M/H] from Miglio et al. (2021)
      RGB (logg = log10(M / R^2) + 4.438 from its mass and radius): applied to [alpha/M] beyond
      APOKASC-3's range (its alpha-rich stars are all RGB): -1.50 (APOKASC-3's own alpha terms
      are -1.5 too); ``evo_alpha_max`` = its RGB 99.5th percentile of [alpha/M] (0.25), beyond
      which the slope is not extrapolated.
    """
    root = Path(realdata_dir)
    a = read_apokasc3(root)
    rc = a["is_red_clump"]
    ok = np.all([np.isfinite(a[c]) for c in ("mass", "teff", "logg", "m_h", "alpha_m")], axis=0)
    params = {"evo_rc_coef": fit_logistic(_rc_features(a["teff"][ok], a["logg"][ok], a["m_h"][ok]), rc[ok]),
              "evo_rc_logg": np.array([a["logg"][ok & rc].min(), a["logg"][ok & rc].max()])}
    for state, sel in (("rgb", ok & ~rc), ("rc", ok & rc)):
        cols = np.column_stack([a[c][sel] for c in GMM_COLUMNS])
        lo, hi = np.percentile(cols, 0.5, axis=0), np.percentile(cols, 99.5, axis=0)
        x = _mass_features(*np.clip(cols, lo, hi).T)
        coef, rms = _lstsq(x, np.log(a["mass"][sel]))
        lin, _ = _lstsq(x[:, :N_LINEAR], np.log(a["mass"][sel]))
        params.update({f"evo_mass_coef_{state}": coef, f"evo_mass_rms_{state}": rms,
                       f"evo_mass_lin_{state}": lin,
                       f"evo_mass_resid_{state}": np.log(a["mass"][sel]) - x @ coef,
                       f"evo_mass_lo_{state}": lo, f"evo_mass_hi_{state}": hi})
    from astropy.table import Table
    m = Table.read(root / MIGLIO2021)
    mass, rad = np.asarray(m["Mass"], float), np.asarray(m["Rad"], float)
    logg = np.log10(mass) - 2 * np.log10(rad) + population.LOGG_SUN
    m_h, alpha = np.asarray(m["__Fe_H_"], float), np.asarray(m["__alpha_M_"], float)
    sel = ((np.asarray(m["evstate"]) == 1) & np.isfinite(logg) & np.isfinite(m_h)
           & np.isfinite(alpha) & (mass > 0))
    coef, _ = _lstsq(np.column_stack([np.ones(sel.sum()), logg[sel] - 2.45, m_h[sel], alpha[sel]]),
                     np.log(mass[sel]))
    params["evo_alpha_slope"] = float(coef[3])
    # beyond Miglio's own range the slope is not extrapolated (its RGB 99.5th percentile, 0.25)
    params["evo_alpha_max"] = float(np.percentile(alpha[sel], 99.5))
    return params


def red_clump_probability(params: dict, teff, logg, m_h) -> np.ndarray:
    """P(red clump | Teff, logg, [M/H]) (:func:`fit_evolution`); 0 outside the clump's logg range."""
    p = 1.0 / (1.0 + np.exp(-np.clip(_rc_features(teff, logg, m_h) @ params["evo_rc_coef"], -30, 30)))
    lo, hi = params["evo_rc_logg"]
    logg = np.asarray(logg, float)
    return np.where((logg >= lo) & (logg <= hi), p, 0.0)


def draw_mass(params: dict, teff, logg, m_h, alpha_m, is_red_clump, rng: np.random.Generator) -> np.ndarray:
    """Mass [Msun] of giants with these labels and states (:func:`fit_evolution`): the state's
    APOKASC-3 cubic regression inside its 0.5-99.5 percentile box of (Teff, logg, [M/H]), its
    linear one at the inputs clipped to the box outside it, + Miglio's [alpha/M] slope beyond
    APOKASC-3's [alpha/M] range, + a resampled APOKASC-3 residual in ln M; halo
    ([M/H] < :data:`HALO_M_H`) lnN(0.86, 0.05); clipped to :data:`MASS_RANGE`. The mean (before
    the residual) is at least :func:`oldest_mass` (no older than 13.8 Gyr by the mock's age
    relation): on the library's giants the linear fallback with Miglio's [alpha/M] slope put 6 %
    of the masses at the 0.7 Msun clip without it."""
    cols = np.column_stack([np.asarray(v, float) for v in (teff, logg, m_h, alpha_m)])
    n = len(cols)
    rc = np.asarray(is_red_clump, bool)
    ln_m = np.empty(n)
    for state, sel in (("rgb", ~rc), ("rc", rc)):
        lo, hi = params[f"evo_mass_lo_{state}"], params[f"evo_mass_hi_{state}"]
        c = np.clip(cols[sel], lo, hi)
        feats = _mass_features(*c.T)
        # the cubic inside APOKASC-3's box; outside it (any input clipped) the linear fit, which
        # cannot run away at the box's empty corners (the cubic reached 1e3 Msun there)
        inside = np.all(cols[sel, :3] == c[:, :3], axis=1)
        mean = np.where(inside, feats @ params[f"evo_mass_coef_{state}"],
                        feats[:, :N_LINEAR] @ params[f"evo_mass_lin_{state}"])
        mean = mean + params["evo_alpha_slope"] * (
            np.minimum(cols[sel, 3], max(params["evo_alpha_max"], hi[3])) - c[:, 3])
        # no mean lighter than a 13.8 Gyr giant (the scatter is added after, so no pile-up)
        mean = np.maximum(mean, np.log(oldest_mass(cols[sel, 2], cols[sel, 3], rc[sel])))
        ln_m[sel] = mean + rng.choice(params[f"evo_mass_resid_{state}"], sel.sum())
    halo = cols[:, 2] < HALO_M_H
    ln_m = np.where(halo, rng.normal(*HALO_LN_MASS, n), ln_m)
    return np.clip(np.exp(ln_m), *MASS_RANGE)


def oldest_mass(m_h, alpha_m, is_red_clump) -> np.ndarray:
    """The mass [Msun] whose :func:`starfm.mock.population.isochrone_age` is 13.8 Gyr: no giant
    has a lighter mean mass in :func:`draw_mass` (0.84-0.90 Msun at [M/H] -1..-0.5, [alpha/M]
    0.3 on the RGB)."""
    m_h, alpha_m = np.asarray(m_h, float), np.asarray(alpha_m, float)
    out = {}
    for state, (c, a, b, d) in population.AGE_RELATION.items():
        out[state] = np.exp((np.log(13.8) - c - b * m_h - d * alpha_m) / a)
    return np.where(is_red_clump, out["rc"], out["rgb"])


def attach_evolution(teff, logg, m_h, alpha_m, params: dict, rng: np.random.Generator) -> dict:
    """``{"mass", "age_gyr", "c_n", "is_red_clump"}`` of giants with these labels, as real giants
    carry them: state ~ Bernoulli(:func:`red_clump_probability`), mass :func:`draw_mass`, age
    :func:`starfm.mock.population.isochrone_age` x exp(N(0, AGE_LN_SCATTER)) in 0.2-13.8 Gyr,
    [C/N] :data:`starfm.mock.population.CN_RELATION` per state + its scatter, in -1.2..0.4."""
    teff, logg, m_h, alpha_m = (np.asarray(v, float) for v in (teff, logg, m_h, alpha_m))
    n = len(teff)
    is_rc = rng.random(n) < red_clump_probability(params, teff, logg, m_h)
    mass = draw_mass(params, teff, logg, m_h, alpha_m, is_rc, rng)
    age = np.clip(population.isochrone_age(mass, m_h, alpha_m, is_rc)
                  * np.exp(rng.normal(0.0, population.AGE_LN_SCATTER, n)), 0.2, 13.8)
    c_n = population.first_dredge_up_c_n(mass, m_h, is_rc, rng)
    return {"mass": mass, "age_gyr": age, "c_n": c_n, "is_red_clump": is_rc}


# ----------------------------------------------------------------------------- ASPCAP label errors
ERROR_LABELS = ("teff", "logg", "m_h", "alpha_m")
# [C/Fe], [N/Fe] errors (the library has none): APOKASC-3 gold's median S_[C/Fe] 0.040 and
# S_[N/Fe] 0.044 dex, scaled by each star's drawn Teff error over the library's median Teff error.
C_FE_ERR = 0.040
N_FE_ERR = 0.044


def _error_features(snr, teff, m_h) -> np.ndarray:
    snr = np.clip(np.asarray(snr, float), 1.0, None)
    return np.column_stack([np.ones_like(snr), np.log10(snr), np.asarray(teff, float) / 1000.0,
                            np.asarray(m_h, float)])


def fit_label_errors(snr, teff, m_h, errors: dict) -> dict:
    """Per label of ``errors`` (name -> (n,) errors, e.g. :data:`ERROR_LABELS`): least squares
    log10(err) = c0 + c1 log10(S/N) + c2 Teff/1000 + c3 [M/H] on the rows where all are finite and
    err > 0, and the rms of the log10 residual. Also the S/N, Teff and [M/H] ranges fitted on (the
    draw clips its inputs to them) and the median Teff error (the [C/Fe], [N/Fe] scale).
    Returns ``{"err_<name>_coef": (4,), "err_<name>_rms": float, "err_lo": (3,), "err_hi": (3,),
    "err_teff_median": float}``."""
    snr, teff, m_h = (np.asarray(v, float) for v in (snr, teff, m_h))
    base = np.isfinite(snr) & (snr > 0) & np.isfinite(teff) & np.isfinite(m_h)
    params = {"err_lo": np.array([snr[base].min(), teff[base].min(), m_h[base].min()]),
              "err_hi": np.array([snr[base].max(), teff[base].max(), m_h[base].max()])}
    for name, err in errors.items():
        err = np.asarray(err, float)
        ok = base & np.isfinite(err) & (err > 0)
        coef, rms = _lstsq(_error_features(snr[ok], teff[ok], m_h[ok]), np.log10(err[ok]))
        params[f"err_{name}_coef"], params[f"err_{name}_rms"] = coef, rms
        if name == "teff":
            params["err_teff_median"] = float(np.median(err[ok]))
    return params


def label_errors(params: dict, snr, teff, m_h, rng: np.random.Generator) -> dict:
    """Drawn ASPCAP-like errors per label: 10^(fit + N(0, rms)) at the inputs clipped to the fitted
    range (:func:`fit_label_errors`); plus ``c_fe`` and ``n_fe`` = :data:`C_FE_ERR` /
    :data:`N_FE_ERR` x (the drawn Teff error / the library's median Teff error)."""
    lo, hi = params["err_lo"], params["err_hi"]
    x = _error_features(*(np.clip(np.asarray(v, float), lo[i], hi[i])
                          for i, v in enumerate((snr, teff, m_h))))
    out = {}
    for key in params:
        if key.startswith("err_") and key.endswith("_coef"):
            name = key[4:-5]
            out[name] = 10 ** (x @ params[key] + rng.normal(0.0, params[f"err_{name}_rms"], len(x)))
    if "teff" in out:
        ratio = out["teff"] / params["err_teff_median"]
        out["c_fe"], out["n_fe"] = C_FE_ERR * ratio, N_FE_ERR * ratio
    return out
