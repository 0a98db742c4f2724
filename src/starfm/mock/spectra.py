"""The mock survey's spectra: red-giant model spectra and their Gaia XP coefficients.

A star's spectrum at Earth is a blackbody of its Teff and radius, dimmed by 1/d^2, with broad
absorption features whose depths depend on Teff, logg and [M/H] (blue line blanketing, Ca H&K,
CH G band, Mg b + MgH, Na D, H-alpha, CN, the Ca II triplet, TiO bands for cool stars), and on
[C/N] and [alpha/M] where red giants show them at XP resolution (below), reddened by the
Fitzpatrick (1999) law of the chosen R_V (default 3.1; ``mock.extinction_r_v``).

*Mixing and alpha signatures* (the mass and age information red-giant spectra carry). A giant's
[C/N] falls with mass through the first dredge-up, which moves carbon into nitrogen: here
[C/Fe] = -0.03 + 0.35 ([C/N] + 0.25) and [N/Fe] = [C/Fe] - [C/N]
(:func:`starfm.mock.apogee.carbon_over_iron`). Optical depths relative to a reference giant
([C/N] = -0.25, [alpha/M] = 0) scale as

- CN bands (violet 388 nm, 421.5 nm; red system 787/810 nm): tau ~ 10^(0.5 ([C/Fe] + [N/Fe])).
  In the weak-line limit a CN band's depth is proportional to n(C) n(N) (exponent 1); the strong
  violet bands of giants are partly saturated, so we take half of that. Scale check: CN-strong
  and CN-weak giants of globular clusters, ~0.5-1 dex apart in [N/Fe], differ by ~0.2-0.4 mag in
  the S(3839) index (Norris, Cottrell, Freeman & Da Costa 1981; Smith 1987, PASP 99, 67);
- CH G band (430 nm): tau ~ 10^(0.7 [C/Fe]) (weak-line limit ~1, partly saturated), the G-band
  index of field giants changing by ~0.1 mag per 0.3 dex in [C/Fe] (the same reviews);
- Mg b + MgH (517 nm): tau ~ 10^(0.75 [alpha/M]): the Lick Mgb index rises by ~25 % from
  [alpha/Fe] = 0 to 0.3 at fixed [Fe/H] in Thomas, Maraston & Bender (2003, MNRAS 339, 897);
- Ca II triplet (850-866 nm, Ca is an alpha element): tau ~ 10^(0.3 [alpha/M]) (strong,
  saturated lines: their equivalent widths grow slowly with abundance).

These are order-of-magnitude strengths from index studies, not fits to synthetic XP spectra;
what matters for the mock is that the signal is present where the real one is, with a plausible
size against the XP noise (tests/test_mock_survey.py checks the coefficients respond). It is sampled on GaiaXPy's default calibrated grid
(336-1020 nm, 2 nm) and projected onto Gaia's own XP basis: ``gaiaxpy.calibrate`` builds the flux
as ``merge_bp * (c_bp @ D_bp) + merge_rp * (c_rp @ D_rp)`` with design matrices ``D`` (55 x 343)
loaded from the GaiaXPy config shipped in site-packages, so we solve, once per band for all stars,
the least-squares problem ``c @ D_band ~ f`` over the wavelengths the band covers (BP 336-642 nm,
RP 636-1020 nm; in the overlap both bands fit f, so the merged flux is f again).
The design matrices are exactly invertible on the grid but ill-conditioned (condition number
~2e7), so the projection is a MAP estimate: Gaussian flux misfit of scale FLUX_TOLERANCE[band]
(relative to the band's mean flux) and a Gaussian prior on each coefficient of the rms real DR3
stars show (:func:`coefficient_prior`). How strong the prior must be is set by the real
archive. In real DR3 spectra the high-order coefficients are noise: on the 2,000 sources of
``xp_spectral_lines`` chunk0 the median |c_k|/err_k is 0.5-1.2 for every k >= 10 at every G from 6
to 18, and bright red sources (G < 13, BP-RP > 1) have |c_k|/c_0 ~ 4e-4 (BP) at k = 15-25.
A model spectrum smooth in wavelength is not smooth in Gaia's basis: fitting it to 0.2 % (the
former tolerance) took 8-25 times the real |c_k|/c_0 at k = 5-50 in BP, even for a bare
blackbody (the fit cancels the ringing the calibrated basis functions carry), and 10-14 times in
RP at k = 5-10, and with the archive's own relevancy rule (3 sigma, :mod:`starfm.mock.xp_continuous`)
it called 55 BP bases relevant at G = 13. With FLUX_TOLERANCE = 0.3 (BP) and 0.06 (RP) the prior
keeps what real spectra keep: the 3-sigma rule then gives the mock the real n_relevant_bases
against G in both bands (tests/test_mock_survey.py). The price is that the calibrated spectrum of
the coefficients (what Gaia would publish) departs from the model spectrum by ~3 % rms (median;
99 % of stars below 6 %), the size of the few-per-cent systematic differences between DR3
calibrated spectra and reference SEDs (Montegriffo et al. 2023). The projector applied to the
calibrated flux of 58 bright red real sources gives that flux back to 0.9 % rms, their
coefficients 0-2 to 10 %, and shrinks the higher orders (to 0.2-0.9 of the archive's in BP),
which in the archive are noise.

G, BP and RP come from GaiaXPy's own Gaia DR3 Vega synthetic photometry of the coefficients
(linear in the coefficients); on 18 Sco it gives G = 5.3283 against the archive's 5.3277, so
``phot_g_mean_mag`` is consistent with the coefficients, and with the token normalisation
2.5 log10 F_G = 25.6873668671 - G (F_G in e-/s; :func:`starfm.tokens.g_flux`). The flux of
coefficients is :func:`starfm.xp_flux.xp_flux` (GaiaXPy's calibrate), the path every part of
starfm uses.
"""
from __future__ import annotations

import functools

import numpy as np

from starfm.constants import EXTINCTION_LAW, R_V
from starfm.extinction_curve import dust_law_curve
from starfm.xp_flux import default_basis, xp_flux
from starfm.xp_tables import N_COEFFICIENTS

# physical constants (SI)
H_PLANCK = 6.62607015e-34
C_LIGHT = 2.99792458e8
K_BOLTZMANN = 1.380649e-23
R_SUN_M = 6.957e8
KPC_M = 3.0856775814913673e19

FLUX_TOLERANCE = {"bp": 0.3, "rp": 0.06}   # projection: flux misfit scale per band, relative to the mean band flux
#                                           (sets the real n_relevant_bases vs G; module docstring)
XP_RESOLVING_POWER = 30.0         # model spectra are smoothed to FWHM = lambda / 30 (11-34 nm), XP-like

# Absorption features: (centre nm, gaussian sigma nm, base depth, kind). The kinds set how the
# depth scales with Teff, logg and [M/H] in ``_feature_depths``.
FEATURES = (
    (393.0, 10.0, 0.22, "metal"),      # Ca II H&K
    (386.0, 5.0, 0.15, "cn_violet"),   # CN 388 (violet system, 0-0)
    (418.0, 6.0, 0.06, "cn_violet"),   # CN 421.5 (violet system, 1-0)
    (430.5, 6.0, 0.15, "ch"),          # CH G band
    (517.0, 8.0, 0.18, "mgb"),         # Mg b triplet + MgH
    (589.3, 6.0, 0.08, "nad"),         # Na D
    (656.3, 6.0, 0.08, "halpha"),      # H alpha
    (787.0, 12.0, 0.06, "cn"),         # CN red system
    (810.0, 12.0, 0.06, "cn"),
    (849.8, 5.0, 0.22, "cat"),         # Ca II triplet
    (854.2, 5.0, 0.30, "cat"),
    (866.2, 5.0, 0.25, "cat"),
    (476.0, 8.0, 0.20, "tio"),         # TiO bands (cool giants only)
    (496.0, 8.0, 0.25, "tio"),
    (545.0, 10.0, 0.25, "tio"),
    (617.0, 10.0, 0.30, "tio"),
    (666.0, 10.0, 0.25, "tio"),
    (710.0, 12.0, 0.45, "tio"),
    (760.0, 12.0, 0.35, "tio"),
    (845.0, 15.0, 0.30, "tio"),
)


@functools.lru_cache(maxsize=1)
def xp_basis() -> dict:
    """GaiaXPy's calibrate design matrices, merge weights, ridge projectors and G/BP/RP vectors.

    Returns a dict: ``wavelength`` (343,) nm; ``design``/``merge``/``mask``/``projector`` per band
    (``projector[band]`` is (n_wl_band, 55): ``coef = flux[:, mask] @ projector``). (Synthetic
    G/BP/RP of coefficients: :func:`starfm.xp_flux.synthetic_photometry`.)
    """
    default = default_basis()
    wavelength = default["wavelength"]
    out = {"wavelength": wavelength, "design": {}, "merge": {}, "mask": {}, "projector": {}, "phot": {}}
    for band in ("bp", "rp"):
        design = default["design"][band]
        mask = default["merge"][band] > 0
        a = design[:, mask].T                              # (n_wl_band, 55): flux = a @ coef
        # c0 per unit flat flux (plain least squares): sets the prior's absolute scale
        kappa = np.linalg.lstsq(a, np.ones(mask.sum()), rcond=None)[0][0]
        precision = a.T @ a / FLUX_TOLERANCE[band] ** 2 + np.diag(1.0 / (kappa * coefficient_prior(band)) ** 2)
        out["projector"][band] = np.linalg.solve(precision, a.T / FLUX_TOLERANCE[band] ** 2).T  # (n_wl_band, 55)
        out["design"][band] = design
        out["merge"][band] = default["merge"][band]
        out["mask"][band] = mask
    sigma = wavelength / (2.3548 * XP_RESOLVING_POWER)
    kernel = np.exp(-0.5 * ((wavelength[None, :] - wavelength[:, None]) / sigma[:, None]) ** 2)
    out["smoothing"] = (kernel / kernel.sum(axis=1, keepdims=True)).T   # flux_xp = flux @ smoothing
    # raw model flux -> coefficients in one product: smoothing then projection
    out["raw_projector"] = {b: out["smoothing"][:, out["mask"][b]] @ out["projector"][b] for b in ("bp", "rp")}
    return out


def coefficient_prior(band: str) -> np.ndarray:
    """Prior rms of XP coefficient k relative to coefficient 0 (from 248 real DR3 stars, G < 13.5).

    Real coefficients fall from ~0.13 c0 (k = 1) and ~1e-2 (k = 2) to < 1e-3 by k ~ 8: XP spectra
    are smooth, and the high orders of real spectra are mostly noise.
    """
    k = np.arange(N_COEFFICIENTS, dtype=float)
    if band == "bp":
        prior = np.maximum(0.02 * np.exp(-(k - 2) / 2.0), 3e-4 * np.exp(-k / 30.0))
    else:
        prior = np.maximum(0.01 * np.exp(-(k - 2) / 1.5), 2e-4 * np.exp(-k / 30.0))
    prior[0], prior[1] = 10.0, 0.3      # overall level and slope: effectively free
    return prior


def project_on_xp(flux: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 343) flux in W m^-2 nm^-1 on the calibrate grid -> BP and RP coefficients (n, 55), e-/s."""
    basis = xp_basis()
    flux = np.atleast_2d(np.asarray(flux, dtype=float))
    return tuple(flux[:, basis["mask"][b]] @ basis["projector"][b] for b in ("bp", "rp"))


def calibrated_flux(bp: np.ndarray, rp: np.ndarray) -> np.ndarray:
    """What ``gaiaxpy.calibrate`` returns for these coefficients (default grid, no truncation)."""
    return xp_flux(bp, rp)


def extinction_law_name(r_v: float = R_V) -> str:
    """The injected law's name as truth.h5 records it (Fitzpatrick 1999 of this R_V)."""
    return f"dust_extinction.parameter_averages.F99(Rv={float(r_v):g})"


@functools.lru_cache(maxsize=8)
def _extinction_curve_cached(wavelength_key: tuple, r_v: float) -> np.ndarray:
    law = EXTINCTION_LAW if r_v == R_V else extinction_law_name(r_v)
    return dust_law_curve(law, r_v, np.asarray(wavelength_key))


def extinction_curve(wavelength_nm: np.ndarray, r_v: float = R_V) -> np.ndarray:
    """A(lambda)/A_V of the injected law: Fitzpatrick (1999) of ``r_v`` (default
    :data:`starfm.constants.EXTINCTION_LAW`, R_V = 3.1)."""
    return _extinction_curve_cached(tuple(np.atleast_1d(np.asarray(wavelength_nm, dtype=float))), float(r_v))


def blackbody_flux(wavelength_nm: np.ndarray, teff: np.ndarray, radius_rsun: np.ndarray,
                   distance_kpc: np.ndarray) -> np.ndarray:
    """pi B_lambda(Teff) (R/d)^2 at Earth, W m^-2 nm^-1, shape (n, n_wl), float32.

    float32 because numpy's float32 exp is vectorised (15x faster than float64 here); the flux
    keeps 7 significant digits, far below the coefficient noise.
    """
    lam = np.asarray(wavelength_nm, dtype=float) * 1e-9
    t = np.asarray(teff, dtype=np.float32)[:, None]
    x = (H_PLANCK * C_LIGHT / (lam * K_BOLTZMANN)).astype(np.float32)[None, :]   # hc / (lambda k)
    dilution = (np.asarray(radius_rsun, dtype=float) * R_SUN_M / (np.asarray(distance_kpc, dtype=float) * KPC_M)) ** 2
    prefactor = (np.pi * 2 * H_PLANCK * C_LIGHT ** 2 / lam ** 5 * 1e-9 * 1e-20).astype(np.float32)  # scaled for float32 range
    with np.errstate(over="ignore"):
        flux = prefactor[None, :] / (np.exp(x / t) - np.float32(1.0))
    flux *= (dilution * 1e20).astype(np.float32)[:, None]
    return flux


REFERENCE_C_N = -0.25           # the giant whose feature depths are the FEATURES' base depths
CN_EXPONENT = 0.5               # CN bands: tau ~ 10^(0.5 ([C/Fe] + [N/Fe])) (module docstring)
CH_EXPONENT = 0.7               # CH G band: tau ~ 10^(0.7 [C/Fe])
MGB_ALPHA_EXPONENT = 0.75       # Mg b + MgH: tau ~ 10^(0.75 [alpha/M])
CAT_ALPHA_EXPONENT = 0.3        # Ca II triplet: tau ~ 10^(0.3 [alpha/M])


def _mixing_terms(c_n):
    """(d[C/Fe], d[C/Fe] + d[N/Fe]) relative to the reference giant ([C/N] = -0.25)."""
    from starfm.mock.apogee import carbon_over_iron

    c_n = np.asarray(c_n, dtype=float)
    d_c = carbon_over_iron(c_n) - carbon_over_iron(REFERENCE_C_N)
    d_n = d_c - (c_n - REFERENCE_C_N)
    return d_c, d_c + d_n


def _feature_depths(kind: str, teff, logg, m_h, c_n=REFERENCE_C_N, alpha_m=0.0):
    """Depth multiplier of one feature kind for each star (vectorised)."""
    theta = (5040.0 / teff) / 1.1     # 1 at Teff ~ 4580 K
    dg = logg - 2.5
    d_c, d_cn = _mixing_terms(c_n)
    if kind == "metal":
        return 10 ** (0.3 * m_h) * theta ** 2
    if kind == "cn_violet":
        return 10 ** (0.5 * m_h + CN_EXPONENT * d_cn) * theta ** 3 * np.clip(1 - 0.3 * dg, 0.2, None)
    if kind == "ch":
        return 10 ** (0.3 * m_h + CH_EXPONENT * d_c) * theta ** 2
    if kind == "mgb":
        return 10 ** (0.35 * m_h + MGB_ALPHA_EXPONENT * alpha_m) * theta ** 3 * np.clip(1 + 0.25 * dg, 0.3, None)
    if kind == "nad":
        return 10 ** (0.3 * m_h) * theta ** 4 * np.clip(1 + 0.15 * dg, 0.3, None)
    if kind == "halpha":
        return (teff / 5000.0) ** 4 * np.clip(1 - 0.05 * dg, 0.3, None)
    if kind == "cn":
        return 10 ** (0.5 * m_h + CN_EXPONENT * d_cn) * theta ** 3 * np.clip(1 - 0.3 * dg, 0.2, None)
    if kind == "cat":
        return 10 ** (0.25 * m_h + CAT_ALPHA_EXPONENT * alpha_m) * np.clip(1 - 0.2 * dg, 0.3, None)
    if kind == "tio":
        return np.clip((4300.0 - teff) / 500.0, 0, 2) * 10 ** (0.2 * m_h) * np.clip(1 - 0.1 * dg, 0.3, None)
    raise ValueError(kind)


def _feature_amplitudes(teff, logg, m_h, c_n=REFERENCE_C_N, alpha_m=0.0) -> np.ndarray:
    """(n, 2 + n_features) amplitude of each absorption shape in ``_feature_shapes``."""
    teff, logg, m_h = (np.asarray(x, dtype=float) for x in (teff, logg, m_h))
    c_n = np.broadcast_to(np.asarray(c_n, dtype=float), teff.shape)
    alpha_m = np.broadcast_to(np.asarray(alpha_m, dtype=float), teff.shape)
    theta = (5040.0 / teff) / 1.1
    columns = [0.5 * 10 ** (0.4 * m_h) * theta ** 4,                                   # blanketing
               0.1 * np.clip(1 + 0.3 * (logg - 2.5), 0.2, None) * (teff / 5000.0) ** 2]  # Balmer jump
    columns += [depth * _feature_depths(kind, teff, logg, m_h, c_n, alpha_m) for _, _, depth, kind in FEATURES]
    return np.stack(columns, axis=1)


@functools.lru_cache(maxsize=4)
def _feature_shapes_cached(wavelength_key: tuple) -> np.ndarray:
    lam = np.asarray(wavelength_key)[None, :]
    shapes = [1 / (1 + np.exp((lam[0] - 440.0) / 30.0)),   # metal lines crowd below ~450 nm
              1 / (1 + np.exp((lam[0] - 370.0) / 8.0))]    # below the Balmer jump
    shapes += [np.exp(-0.5 * ((lam[0] - centre) / sigma) ** 2) for centre, sigma, _, _ in FEATURES]
    return np.stack(shapes)


def absorption_depth(wavelength_nm: np.ndarray, teff, logg, m_h, c_n=REFERENCE_C_N, alpha_m=0.0) -> np.ndarray:
    """Optical depth tau(lambda) (n, n_wl) of the absorption features: spectrum *= exp(-tau).

    Each feature is a fixed shape in wavelength times a per-star amplitude, so tau is one matrix
    product (amplitudes @ shapes).
    """
    shapes = _feature_shapes_cached(tuple(np.asarray(wavelength_nm, dtype=float)))
    return (_feature_amplitudes(teff, logg, m_h, c_n, alpha_m) @ shapes).astype(np.float32)


def model_spectrum(teff, logg, m_h, radius_rsun, distance_kpc, a_v, wavelength_nm=None,
                   xp_resolution: bool = True, c_n=REFERENCE_C_N, alpha_m=0.0,
                   r_v: float = R_V) -> np.ndarray:
    """Flux at Earth, W m^-2 nm^-1 (n, n_wl): blackbody * exp(-tau) * 10^(-0.4 A_V F99(lambda; R_V)/A_V).

    On the XP grid (``wavelength_nm`` None) it is smoothed to XP resolution unless
    ``xp_resolution`` is False.
    """
    lam = xp_basis()["wavelength"] if wavelength_nm is None else np.asarray(wavelength_nm, dtype=float)
    flux = blackbody_flux(lam, teff, radius_rsun, distance_kpc)
    # one exp for features and dust: 10^(-0.4 A) = exp(-0.4 ln10 A)
    ext = np.outer(np.asarray(a_v, dtype=np.float32),
                   (0.4 * np.log(10.0) * extinction_curve(lam, r_v)).astype(np.float32))
    flux *= np.exp(-absorption_depth(lam, teff, logg, m_h, c_n, alpha_m) - ext)
    if wavelength_nm is None and xp_resolution:
        flux = flux @ xp_basis()["smoothing"].astype(np.float32)
    return flux


def xp_coefficients(teff, logg, m_h, radius_rsun, distance_kpc, a_v, c_n=REFERENCE_C_N, alpha_m=0.0,
                    r_v: float = R_V) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free BP and RP coefficients (n, 55) of the model spectra (smoothing folded in)."""
    basis = xp_basis()
    flux = model_spectrum(teff, logg, m_h, radius_rsun, distance_kpc, a_v, xp_resolution=False,
                          c_n=c_n, alpha_m=alpha_m, r_v=r_v)
    return tuple((flux @ basis["raw_projector"][b].astype(np.float32)).astype(np.float64) for b in ("bp", "rp"))
