"""The mock survey: a seeded APOGEE x Gaia red-giant survey in the exact formats of the real data.

``make_mock_survey`` writes, under ``out_dir``:

- ``apogee/allStar-dr17-synspec_rev1.fits`` and ``apogee/APOGEE_DistMass-DR17_v1.6.1.fits``
  (row-aligned; real allStar column names, dtypes and bad-value conventions);
- ``gaia_archive/gaia_source.h5`` and ``gaia_archive/xp_continuous.h5`` (archive column names and
  dtypes, one row per distinct non-zero source_id; sources without XP absent) + ``manifest.json``;
- ``dust/combined19/combine19.h5``: a synthetic 3-D dust map in mwdust's Combined19 format;
- ``truth.h5``: the true parameters of every allStar row.

The physical model (all vectorised, generated in chunks of ``CHUNK_SIZE`` stars and streamed):

- *Stars.* Ages from a disk star-formation history (older and metal-poor in halo fields, old in
  the bulge); [M/H] from an age-metallicity relation with 0.18 dex scatter; mass = main-sequence
  turn-off mass, t_MS = 10 Gyr 10^(0.15 [M/H]) M^-2.5, kept in 0.7-3 Msun (age recomputed from the
  mass so that the relation holds exactly). 30 % red clump (logg 2.4, secondary clump above
  1.8 Msun), the rest on the RGB (Teff = 5200 - 441.86 (3.65 - logg) - 250 [M/H] + 60 (M - 1.2),
  logg from a luminosity-function-like 0.8-3.6 distribution). L = M Teff^4 / g, R = sqrt(L)/Teff^2.
- *Positions.* APOGEE-like plates (1.5 deg radius): disk fields |b| < 20 deg, bulge fields, halo
  fields |b| > 20 deg. Distances from an APOGEE-like H-magnitude selection (H mostly 7-12.2, a
  deeper 12.2-13.8 tail), solved with the extinction along the sightline, kept in 0.5-15 kpc.
- *Dust.* An exponential dust disk (scale length 3 kpc, height 0.12 kpc, 0.4 mag/kpc E(B-V)_SFD at
  the Sun, per-pixel log-normal clumpiness), integrated along every pixel's sightline to give a
  non-decreasing E(B-V)_SFD on the 120 distance moduli linspace(4, 18.875, 120), on nested HEALPix
  nside 64 with nside 128 at |b| < 5 deg. Each star's true E(B-V) (SFD scale) is *that map*
  evaluated at its true distance with the same lookup and linear interpolation in distance
  modulus as ``mwdust.Combined19`` (our own vectorised evaluation; the tests check it against
  mwdust). Extinction A(lambda) = 3.1 * 0.884 * E_SFD * F99(lambda)/A_V (Leung & Bovy eq. 10).
- *Spectra and Gaia.* See :mod:`starfm.mock_spectra`: XP coefficients are the projection of each
  model spectrum on Gaia's basis; G, BP-RP are GaiaXPy's synthetic photometry of them. XP errors
  follow err_k^2 = a_k^2 F_G + b_k^2 F_G^2 fitted, per coefficient, to 2,000 real DR3 sources; noise drawn with
  sigma = error * standard_deviation (how GaiaXPy scales the covariance). Parallax = 1/d + the
  Lindegren et al. (2021) zero-point (``zero_point.zpt.get_zpt``) + 0.005 clip(G - 13, 0, 4) mas
  + noise.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np

from starfm import mock_spectra
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.dust_map import DISTMODS, write_combined19
from starfm.io import StarfmInputError, atomic_path, write_table

log = logging.getLogger(__name__)

ALLSTAR_NAME = "allStar-dr17-synspec_rev1.fits"
DISTMASS_NAME = "APOGEE_DistMass-DR17_v1.6.1.fits"
XP_FORMATS = ("votable", "votable_plain", "fits", "csv", "ecsv")   # as MockGaiaArchive serves
MIN_STARS = 50
CHUNK_SIZE = 50_000

EBV_TRUE_OVER_SFD = 0.884          # Leung & Bovy (2024) eq. 10
R_V = 3.1
EXTINCTION_LAW = "dust_extinction.parameter_averages.F99(Rv=3.1)"
EXTRA_ZERO_POINT_MAS = 0.005       # paper: + 0.005 clip(G - 13, 0, 4) mas
DR3_SOLUTION_ID = 4545469030156206080
HEALPIX12_FACTOR = 2 ** 35         # Gaia source_id = HEALPix level-12 (nested) index * 2^35 + n

# survey proportions
RED_CLUMP_FRACTION = 0.30
DUPLICATE_FRACTION = 0.05          # stars observed twice (second row: EXTRATARG bit 4)
UNMATCHED_FRACTION = 0.03          # GAIAEDR3_SOURCE_ID = 0
STARFLAG_FRACTION = 0.08
ASPCAP_BAD_FRACTION = 0.05         # ASPCAPFLAG bit 19 (M_H_BAD) or 23 (STAR_BAD)
ASPCAP_MISSING_FRACTION = 0.01     # no ASPCAP result: labels NaN, STAR_BAD set
BAD_2MASS_FRACTION = 0.01          # one band 99.999 (a further 0.3 % NaN)
DISTMASS_OFF_GRID_FRACTION = 0.03  # BITMASK value 2
NO_XP_RANDOM_FRACTION = 0.06       # besides every G > 17.65 source
MISSING_BAND_FRACTION = 0.01
PARAMS_2P_FRACTION = 0.01          # astrometric_params_solved = 3

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
# median n_relevant_bases vs G (same real sample)
N_RELEVANT_G = np.array([9.5, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 16.5, 17.0, 17.5])
N_RELEVANT_MEDIAN = {"bp": np.array([26, 13, 10, 9, 7, 6, 5, 4, 3, 3.0]),
                     "rp": np.array([25, 8, 7, 6, 5, 4, 4, 3, 3, 3.0])}
XP_BASIS_FUNCTION_ID = {"bp": 56, "rp": 57}

# 2MASS zero-point flux densities, W m^-2 nm^-1 (Cohen et al. 2003)
TWOMASS_ZERO_FLUX = {"J": 3.129e-12, "H": 1.133e-12, "K": 4.283e-13}

# allStar columns we write, with the real DR17 dtypes (checked against real allStar rows in tests)
ALLSTAR_FORMATS = {
    "APOGEE_ID": "30A", "TELESCOPE": "6A", "FIELD": "20A", "RA": "D", "DEC": "D", "GLON": "D",
    "GLAT": "D", "J": "E", "J_ERR": "E", "H": "E", "H_ERR": "E", "K": "E", "K_ERR": "E",
    "AK_TARG": "E", "SNR": "E", "STARFLAG": "K", "GAIAEDR3_SOURCE_ID": "K", "GAIAEDR3_PARALLAX": "E",
    "GAIAEDR3_PARALLAX_ERROR": "E", "GAIAEDR3_PHOT_G_MEAN_MAG": "E", "ASPCAPFLAG": "K",
    "EXTRATARG": "J", "TEFF": "E", "TEFF_ERR": "E", "LOGG": "E", "LOGG_ERR": "E", "M_H": "E",
    "M_H_ERR": "E",
}
DISTMASS_FORMATS = {"APOGEE_ID": "30A", "MASS": "E", "MASS_ERR": "E", "AGE": "E", "AGE_ERR": "E",
                    "DISTANCE": "E", "BITMASK": "J"}
GAIA_SOURCE_DTYPES = {
    "source_id": "i8", "ra": "f8", "dec": "f8", "l": "f8", "b": "f8", "parallax": "f8",
    "parallax_error": "f4", "phot_g_mean_mag": "f4", "bp_rp": "f4", "phot_bp_rp_excess_factor": "f4",
    "ruwe": "f4", "nu_eff_used_in_astrometry": "f4", "pseudocolour": "f4", "ecl_lat": "f8",
    "astrometric_params_solved": "i2",
}
XP_DTYPES = {"source_id": "i8", "solution_id": "i8"}
for _band in ("bp", "rp"):
    XP_DTYPES.update({
        f"{_band}_basis_function_id": "i2", f"{_band}_degrees_of_freedom": "i2",
        f"{_band}_n_parameters": "i2", f"{_band}_n_measurements": "i2",
        f"{_band}_n_rejected_measurements": "i2", f"{_band}_standard_deviation": "f4",
        f"{_band}_chi_squared": "f4", f"{_band}_coefficients": "f8", f"{_band}_coefficient_errors": "f4",
        f"{_band}_n_relevant_bases": "i2", f"{_band}_relative_shrinking": "f4",
    })

STARFLAG_BITS = np.array([2, 9, 11, 17, 3])          # BRIGHT_NEIGHBOR, PERSIST_HIGH, ... (set -> label NaN)
ASPCAP_HARMLESS_BITS = np.array([6, 7, 8])           # *_WARN bits: common and harmless
ASPCAP_BAD_BITS = np.array([19, 23])                 # M_H_BAD, STAR_BAD (label NaN downstream)


# ----------------------------------------------------------------------------- dust map
def build_dust_map(rng: np.random.Generator, fine_lat_deg: float = 5.0):
    """Synthetic Combined19 map: returns (nside, healpix_index, best_fit (n_pix, 120) E(B-V)_SFD).

    nside 64 everywhere except pixels whose centre has |b| < ``fine_lat_deg``, split into their
    four nested nside 128 children. E(B-V) integrates an exponential dust disk along the sightline.
    """
    import healpy

    coarse = np.arange(healpy.nside2npix(64))
    theta, _ = healpy.pix2ang(64, coarse, nest=True)
    split = np.abs(90.0 - np.degrees(theta)) < fine_lat_deg
    fine = (coarse[split][:, None] * 4 + np.arange(4)[None, :]).ravel()   # nested children
    nside = np.concatenate([np.full((~split).sum(), 64), np.full(len(fine), 128)]).astype("uint32")
    hpix = np.concatenate([coarse[~split], fine]).astype("uint64")
    theta, phi = np.empty(len(hpix)), np.empty(len(hpix))
    for ns in (64, 128):
        sel = nside == ns
        theta[sel], phi[sel] = healpy.pix2ang(ns, hpix[sel].astype(np.int64), nest=True)
    glon, glat = np.degrees(phi), 90.0 - np.degrees(theta)
    dist_nodes = 10 ** ((DISTMODS - 10.0) / 5.0)                         # kpc
    best_fit = np.empty((len(hpix), len(DISTMODS)))
    clump = np.exp(rng.normal(0.0, 0.3, len(hpix)))                       # angular structure
    # integrate (midpoint rule) on 2 sub-steps per distance-modulus interval (a 6 % step in
    # distance: the density is smooth on that scale) and 16 from the Sun to the first node
    sub = np.concatenate([np.linspace(0, dist_nodes[0], 17)[1:]]
                         + [np.linspace(a, b, 3)[1:] for a, b in zip(dist_nodes[:-1], dist_nodes[1:])])
    node_idx = np.concatenate([[15], 16 + 2 * np.arange(1, len(DISTMODS)) - 1])
    for start in range(0, len(hpix), 8192):
        sl = slice(start, start + 8192)
        cl, sl_b = np.radians(glon[sl])[:, None], np.radians(glat[sl])[:, None]
        edges = np.concatenate([[0.0], sub])
        rho = _dust_density(0.5 * (edges[1:] + edges[:-1])[None, :], cl, sl_b)
        ds = np.diff(edges)[None, :]
        cum = np.cumsum(rho * ds, axis=1)
        best_fit[sl] = cum[:, node_idx] * clump[sl, None]
    return nside, hpix, best_fit


def _dust_density(s_kpc, l_rad, b_rad, r0=8.2, scale_length=3.0, scale_height=0.12, local=0.4):
    """E(B-V)_SFD per kpc of an exponential dust disk, truncated beyond R = 18 kpc."""
    x = r0 - s_kpc * np.cos(b_rad) * np.cos(l_rad)
    y = s_kpc * np.cos(b_rad) * np.sin(l_rad)
    z = s_kpc * np.sin(b_rad) + 0.02                                      # Sun 20 pc above the plane
    radius = np.hypot(x, y)
    rho = local * np.exp(-(radius - r0) / scale_length - np.abs(z) / scale_height)
    return np.where(radius < 18.0, rho, 0.0)


class DustMapEvaluator:
    """Vectorised evaluation of a written map exactly as mwdust.Combined19 does it.

    Pixel: the finest nside level containing the star (nested HEALPix of (l, b)); value: linear
    interpolation in distance modulus on DISTMODS, linear extrapolation outside (a k=1 spline).
    """

    def __init__(self, nside, healpix_index, best_fit):
        self.best_fit = np.asarray(best_fit)
        self.levels = []
        for ns in sorted(set(int(v) for v in np.unique(nside)), reverse=True):
            sel = np.flatnonzero(nside == ns)
            order = np.argsort(healpix_index[sel])
            self.levels.append((ns, np.asarray(healpix_index[sel][order], dtype=np.int64), sel[order]))

    def rows(self, glon, glat):
        import healpy

        theta, phi = np.radians(90.0 - np.asarray(glat)), np.radians(np.asarray(glon))
        out = np.full(len(theta), -1, dtype=np.int64)
        for ns, sorted_pix, rows in self.levels:
            pix = healpy.ang2pix(ns, theta, phi, nest=True)
            pos = np.clip(np.searchsorted(sorted_pix, pix), 0, len(sorted_pix) - 1)
            hit = (sorted_pix[pos] == pix) & (out < 0)
            out[hit] = rows[pos[hit]]
        return out

    def __call__(self, glon, glat, distance_kpc):
        rows = self.rows(glon, glat)
        dm = 5 * np.log10(np.asarray(distance_kpc, dtype=float)) + 10.0
        step = DISTMODS[1] - DISTMODS[0]
        j = np.clip(np.floor((dm - DISTMODS[0]) / step).astype(int), 0, len(DISTMODS) - 2)
        w = (dm - DISTMODS[j]) / step
        r = np.where(rows < 0, 0, rows)
        ebv = self.best_fit[r, j] * (1 - w) + self.best_fit[r, j + 1] * w
        return np.where(rows < 0, np.nan, ebv)


# ----------------------------------------------------------------------------- fields and stars
def make_fields(n_stars: int, rng: np.random.Generator) -> dict:
    """APOGEE-like plate centres: 70 % disk (|b| < 20), 10 % bulge, 20 % halo (|b| > 20)."""
    n_fields = int(np.clip(n_stars // 1500, 12, 600))
    kind = rng.choice(3, size=n_fields, p=[0.7, 0.1, 0.2])                # 0 disk, 1 bulge, 2 halo
    glon = np.where(kind == 0, rng.uniform(0, 360, n_fields), rng.uniform(-12, 12, n_fields) % 360)
    glat = np.where(kind == 0, np.clip(rng.normal(0, 7, n_fields), -19, 19), rng.uniform(-12, 6, n_fields))
    halo = kind == 2
    glon[halo] = rng.uniform(0, 360, halo.sum())
    glat[halo] = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(22)), 1, halo.sum()))) \
        * rng.choice([-1, 1], halo.sum())
    ra, dec = _gal_to_icrs(glon, glat)
    telescope = np.where(dec < -15, "lco25m", "apo25m").astype("<U6")
    telescope[rng.random(n_fields) < 0.02] = "apo1m"
    lab = np.round(glon).astype(int) % 360
    name = np.char.add(np.char.zfill(lab.astype(str), 3),
                       np.char.add(np.where(glat >= 0, "+", "-"),
                                   np.char.zfill(np.abs(np.round(glat)).astype(int).astype(str), 2)))
    name = np.where(kind == 1, np.char.add("BLG", name), name)
    return {"kind": kind, "glon": glon, "glat": glat, "telescope": telescope, "name": name}


def _gal_to_icrs(glon, glat):
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    c = SkyCoord(l=np.asarray(glon) * u.deg, b=np.asarray(glat) * u.deg, frame="galactic").icrs
    return c.ra.deg, c.dec.deg


def _ecliptic_latitude(ra, dec):
    from astropy.coordinates import BarycentricMeanEcliptic, SkyCoord
    import astropy.units as u

    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    return c.transform_to(BarycentricMeanEcliptic()).lat.deg


def draw_stars(n: int, field_kind: np.ndarray, rng: np.random.Generator) -> dict:
    """True mass, age, [M/H], Teff, logg, L, R and evolutionary state of ``n`` giants."""
    disk, bulge, halo = field_kind == 0, field_kind == 1, field_kind == 2
    # star-formation history: log-uniform 0.8-12 Gyr mixed with uniform 1-13 Gyr (disk)
    age = np.where(rng.random(n) < 0.6, 10 ** rng.uniform(np.log10(0.8), np.log10(12.0), n),
                   rng.uniform(1.0, 13.0, n))
    age = np.where(halo, rng.uniform(9.5, 13.0, n), age)
    age = np.where(bulge, np.where(rng.random(n) < 0.7, rng.uniform(8, 13, n), rng.uniform(1, 8, n)), age)
    # age-metallicity relation with scatter; a metal-poor old thick-disk component
    m_h = 0.15 - 0.035 * age + rng.normal(0, 0.18, n)
    thick = disk & (age > 8) & (rng.random(n) < 0.25)
    m_h = np.where(thick, rng.normal(-0.5, 0.25, n), m_h)
    m_h = np.where(halo, rng.normal(-1.3, 0.5, n), m_h)
    m_h = np.where(bulge, rng.normal(-0.1, 0.4, n), m_h)
    m_h = np.clip(m_h, -2.4, 0.55)
    # giant mass = turn-off mass: t_MS = 10 Gyr 10^(0.15 [M/H]) M^-2.5
    lifetime_factor = 10.0 * 10 ** (0.15 * m_h)
    mass_initial = np.clip((lifetime_factor / age) ** 0.4, 0.7, 3.0)
    age = lifetime_factor / mass_initial ** 2.5          # exact relation after the mass clip
    is_rc = rng.random(n) < RED_CLUMP_FRACTION
    mass = np.where(is_rc & (mass_initial < 1.5), mass_initial - 0.05, mass_initial)  # RGB mass loss
    # RGB: logg from p ~ exp((logg - 3.6)/0.7) on [0.8, 3.6] (more stars at the base of the RGB)
    u = rng.random(n)
    lo = np.exp((0.8 - 3.6) / 0.7)
    logg_rgb = 3.6 + 0.7 * np.log(lo + u * (1 - lo))
    teff_rgb = 5200 - 441.86 * (3.65 - logg_rgb) - 250 * m_h + 60 * (mass - 1.2)
    logg_rc = 2.40 + 0.25 * np.clip(mass - 1.8, 0, 1.2) + rng.normal(0, 0.06, n)
    teff_rc = 4680 - 280 * m_h + 60 * (mass - 1.2)
    logg = np.where(is_rc, logg_rc, logg_rgb)
    teff = np.clip(np.where(is_rc, teff_rc, teff_rgb) + rng.normal(0, 50, n), 3500, 5600)
    luminosity = mass * (teff / mock_spectra.T_SUN) ** 4 / 10 ** (logg - mock_spectra.LOGG_SUN)
    radius = np.sqrt(luminosity) / (teff / mock_spectra.T_SUN) ** 2
    return {"mass": mass, "age_gyr": age, "m_h": m_h, "teff": teff, "logg": logg,
            "luminosity": luminosity, "radius": radius, "is_red_clump": is_rc}


def twomass_absolute(teff, radius_rsun, m_h):
    """Absolute J, H, K (2MASS): H from a blackbody at 10 pc; J-K from the giant colour-Teff
    relation of Gonzalez Hernandez & Bonifacio (2009); J-H = 0.78 (J-K)."""
    flux_h = mock_spectra.blackbody_flux([mock_spectra.TWOMASS_WAVELENGTH_NM["H"]], teff, radius_rsun,
                                         np.full(len(teff), 0.01))[:, 0].astype(float)
    abs_h = -2.5 * np.log10(flux_h / TWOMASS_ZERO_FLUX["H"])
    # theta = 0.6517 + 0.6312 X + 0.0168 X^2 - 0.0381 X [Fe/H] + 0.0256 [Fe/H] + 0.0013 [Fe/H]^2
    theta = 5040.0 / teff
    a, b = 0.0168, 0.6312 - 0.0381 * m_h
    c = 0.6517 + 0.0256 * m_h + 0.0013 * m_h ** 2 - theta
    j_k = (-b + np.sqrt(b ** 2 - 4 * a * c)) / (2 * a)
    j_h = 0.78 * j_k
    return abs_h + j_h, abs_h, abs_h + j_h - j_k


# ----------------------------------------------------------------------------- one chunk
def _chunk(n_rows: int, chunk_index: int, seed: int, fields: dict, dust: DustMapEvaluator,
           zpt_module) -> dict:
    """Generate ``n_rows`` allStar rows (with their duplicates) and everything that goes with them."""
    rng = np.random.default_rng([seed, 1, chunk_index])
    n_dup = int(round(DUPLICATE_FRACTION * n_rows))
    n = n_rows - n_dup
    # positions: a plate, then uniform within 1.5 deg of its centre
    f = rng.integers(0, len(fields["kind"]), n)
    r, pa = 1.5 * np.sqrt(rng.random(n)), rng.uniform(0, 2 * np.pi, n)
    glat = np.clip(fields["glat"][f] + r * np.sin(pa), -89.9, 89.9)
    glon = (fields["glon"][f] + r * np.cos(pa) / np.cos(np.radians(glat))) % 360
    ra, dec = _gal_to_icrs(glon, glat)
    stars = draw_stars(n, fields["kind"][f], rng)

    # distances from an APOGEE-like H selection, with the extinction along the sightline
    abs_j, abs_h, abs_k = twomass_absolute(stars["teff"], stars["radius"], stars["m_h"])
    band = rng.random(n)
    h_target = np.where(band < 0.75, 12.2 + np.log10(1 - rng.random(n) * (1 - 10 ** (-0.3 * 5.2))) / 0.3,
                        np.where(band < 0.95, rng.uniform(12.2, 13.8, n), rng.uniform(5.0, 7.0, n)))
    k_jhk = {b: mock_spectra.extinction_curve([mock_spectra.TWOMASS_WAVELENGTH_NM[b]])[0] for b in "JHK"}
    a_v_per_ebv = R_V * EBV_TRUE_OVER_SFD
    # stars the selection would put nearer than 0.5 kpc (farther than 15) are moved just inside
    # the range (they become fainter/brighter targets) rather than piled up on the limit
    near, far = 0.5 + rng.exponential(0.3, n), 15.0 - rng.exponential(1.5, n)
    distance = np.clip(10 ** ((h_target - abs_h - 10) / 5), 0.5, 15.0)
    for _ in range(4):
        ebv = np.nan_to_num(dust(glon, glat, distance))
        distance = 10 ** ((h_target - abs_h - a_v_per_ebv * ebv * k_jhk["H"] - 10) / 5)
        distance = np.clip(np.where(distance < 0.5, near, np.where(distance > 15.0, far, distance)), 0.5, 15.0)
    ebv = dust(glon, glat, distance)
    a_v = a_v_per_ebv * ebv
    dist_mod = 5 * np.log10(distance) + 10
    jhk_true = {b: m + dist_mod + a_v * k_jhk[b] for b, m in zip("JHK", (abs_j, abs_h, abs_k))}

    # spectra -> XP coefficients -> synthetic G, BP, RP
    bp_true, rp_true = mock_spectra.xp_coefficients(stars["teff"], stars["logg"], stars["m_h"],
                                                    stars["radius"], distance, a_v)
    mags = mock_spectra.synthetic_gaia_mags(bp_true, rp_true)
    g_true, bp_rp_true = mags[:, 0], mags[:, 1] - mags[:, 2]

    out = {"n": n, "n_dup": n_dup, "glon": glon, "glat": glat, "ra": ra, "dec": dec, "field": f,
           "distance": distance, "ebv": ebv, "a_v": a_v, "g_true": g_true, "bp_rp_true": bp_rp_true,
           "jhk": jhk_true, **stars}
    out["source_id"] = _source_ids(ra, dec, rng)
    out["gaia"] = _gaia_source(out, rng, zpt_module)
    out["xp"] = _xp_table(out, bp_true, rp_true, rng)
    return out


def _source_ids(ra, dec, rng):
    import healpy

    hp12 = healpy.ang2pix(4096, np.radians(90 - dec), np.radians(ra), nest=True).astype(np.int64)
    return hp12 * HEALPIX12_FACTOR + rng.integers(1, 2 ** 35 - 1, len(ra))


def _gaia_source(s: dict, rng, zpt_module) -> dict:
    n = s["n"]
    g = (s["g_true"] + rng.normal(0, 0.003, n)).astype(np.float32)
    bp_rp = (s["bp_rp_true"] + rng.normal(0, 0.01, n)).astype(np.float32)
    solved = np.where(rng.random(n) < 0.12 + 0.1 * np.clip(g - 15, 0, 3), 95, 31).astype(np.int16)
    solved[rng.random(n) < PARAMS_2P_FRACTION] = 3
    nu = np.clip(1.76 - 1.61 / np.pi * np.arctan(0.531 * bp_rp.astype(float)), 1.24, 1.72)
    nu_eff = np.where(solved == 31, nu, np.nan).astype(np.float32)
    pseudo = np.where(solved == 95, np.clip(nu + rng.normal(0, 0.03, n), 1.24, 1.72), np.nan).astype(np.float32)
    ecl_lat = _ecliptic_latitude(s["ra"], s["dec"])
    # parallax: truth + Lindegren zero-point + the paper's extra term + noise
    sigma = np.sqrt(0.015 ** 2 + (0.149 * 10 ** (0.2 * (g.astype(float) - 17.5))) ** 2) \
        * np.exp(rng.normal(0, 0.15, n))
    zero_point = np.full(n, np.nan)
    ok = solved != 3
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zero_point[ok] = zpt_module.get_zpt(g[ok].astype(float), nu_eff[ok].astype(float),
                                            pseudo[ok].astype(float), ecl_lat[ok], solved[ok].astype(float))
    zero_point += EXTRA_ZERO_POINT_MAS * np.clip(g.astype(float) - 13, 0, 4)
    parallax_true = 1.0 / s["distance"]
    parallax = np.where(ok, parallax_true + zero_point + sigma * rng.standard_normal(n), np.nan)
    ruwe = np.exp(rng.normal(0.0, 0.08, n))
    tail = rng.random(n) < 0.07
    ruwe[tail] = rng.uniform(1.4, 5.0, tail.sum())
    excess = 1.16 + 0.04 * np.clip(bp_rp, 0, 4) + rng.normal(0, 0.01, n) + 0.02 * np.clip(g - 16, 0, None)
    crowded = rng.random(n) < 0.03
    excess[crowded] = rng.uniform(1.5, 4.0, crowded.sum())
    return {"source_id": s["source_id"], "ra": s["ra"], "dec": s["dec"], "l": s["glon"], "b": s["glat"],
            "parallax": parallax, "parallax_error": np.where(ok, sigma, np.nan).astype(np.float32),
            "phot_g_mean_mag": g, "bp_rp": bp_rp, "phot_bp_rp_excess_factor": excess.astype(np.float32),
            "ruwe": np.where(ok, ruwe, np.nan).astype(np.float32), "nu_eff_used_in_astrometry": nu_eff,
            "pseudocolour": pseudo, "ecl_lat": ecl_lat, "astrometric_params_solved": solved,
            "_parallax_true": parallax_true, "_zero_point": zero_point}


def xp_coefficient_errors(band: str, g_flux: np.ndarray) -> np.ndarray:
    """Median (no scatter) archive coefficient errors (n, 55) for G-band fluxes F_G [e-/s]."""
    log_a, log_b = XP_ERROR_LOG10[band]
    a, b = 10 ** np.asarray(log_a), 10 ** np.asarray(log_b)
    f = np.asarray(g_flux, dtype=float)[:, None]
    return np.sqrt(a ** 2 * f + b ** 2 * f ** 2)


def _xp_table(s: dict, bp_true, rp_true, rng) -> dict:
    n = s["n"]
    g = s["gaia"]["phot_g_mean_mag"].astype(float)
    f_g = mock_spectra.g_flux_from_mag(g)
    has_xp = (g < 17.65) & (rng.random(n) >= NO_XP_RANDOM_FRACTION) & np.isfinite(g)
    missing = np.where(rng.random(n) < MISSING_BAND_FRACTION, rng.integers(1, 3, n), 0)  # 1: no BP, 2: no RP
    cols = {"source_id": s["source_id"], "solution_id": np.full(n, DR3_SOLUTION_ID, dtype=np.int64)}
    for i, (band, true) in enumerate((("bp", bp_true), ("rp", rp_true))):
        absent = missing == i + 1
        scatter = np.exp(rng.normal(0, XP_ERROR_SCATTER, (n, 1)) + rng.normal(0, 0.1, (n, mock_spectra.N_COEF)))
        err = xp_coefficient_errors(band, f_g) * scatter
        std = 1.0 + rng.gamma(2.0, 0.04, n)
        coef = true + err * std[:, None] * rng.standard_normal(true.shape)
        med = np.interp(g, N_RELEVANT_G, N_RELEVANT_MEDIAN[band])
        n_rel = np.round(med * np.exp(rng.normal(0, 0.35, n)))
        tail = rng.random(n) < 0.1
        n_rel[tail] = rng.integers(10, 56, tail.sum())
        n_rel = np.clip(n_rel, 2, 55)
        n_meas = np.clip(np.round(np.exp(rng.normal(np.log(1500 if band == "bp" else 2000), 0.4, n))), 300, 30000)
        dof = n_meas - mock_spectra.N_COEF
        cols[f"{band}_basis_function_id"] = np.where(absent, 0, XP_BASIS_FUNCTION_ID[band]).astype(np.int16)
        cols[f"{band}_degrees_of_freedom"] = np.where(absent, 0, dof).astype(np.int16)
        cols[f"{band}_n_parameters"] = np.where(absent, 0, mock_spectra.N_COEF).astype(np.int16)
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


# ----------------------------------------------------------------------------- APOGEE rows
def _apogee_ids(ra, dec):
    """2MHHMMSSss+DDMMSSs from (ra, dec), vectorised."""
    ra_cs = np.round(ra / 15 * 3600 * 100).astype(np.int64) % (24 * 3600 * 100)
    hh, rem = np.divmod(ra_cs, 3600 * 100)
    mm, ss = np.divmod(rem, 60 * 100)
    dec_ds = np.round(np.abs(dec) * 3600 * 10).astype(np.int64)
    dd, rem = np.divmod(dec_ds, 3600 * 10)
    dm, ds = np.divmod(rem, 60 * 10)
    ra_part = hh * 1000000 + mm * 10000 + ss
    dec_part = dd * 100000 + dm * 1000 + ds
    return np.char.add(np.char.add("2M", np.char.zfill(ra_part.astype(str), 8)),
                       np.char.add(np.where(dec >= 0, "+", "-"), np.char.zfill(dec_part.astype(str), 7)))


def _apogee_rows(s: dict, fields: dict, rng) -> tuple[dict, dict, np.ndarray]:
    """allStar and DistMass columns (duplicates included, shuffled) and the base-star index of each row."""
    n, n_dup = s["n"], s["n_dup"]
    dup_of = rng.choice(n, size=n_dup, replace=False)
    base = np.concatenate([np.arange(n), dup_of])
    is_dup = np.concatenate([np.zeros(n, bool), np.ones(n_dup, bool)])
    order = rng.permutation(len(base))
    base, is_dup = base[order], is_dup[order]
    m = len(base)
    f = s["field"][base]
    telescope = fields["telescope"][f].copy()
    field = fields["name"][f].copy()
    # the second observation: the other hemisphere's telescope or the 1-m, on an overlapping plate
    telescope[is_dup] = np.where(telescope[is_dup] == "apo25m", "apo1m", "apo25m")
    field[is_dup] = np.char.add(field[is_dup], "_2")

    unmatched = rng.random(n) < UNMATCHED_FRACTION
    source_id = np.where(unmatched, 0, s["source_id"])[base]

    # 2MASS
    cols = {"APOGEE_ID": s["apogee_id"][base], "TELESCOPE": telescope, "FIELD": field,
            "RA": s["ra"][base], "DEC": s["dec"][base], "GLON": s["glon"][base], "GLAT": s["glat"][base]}
    for b in "JHK":
        mag = s["jhk"][b][base]
        err = np.sqrt(0.018 ** 2 + (0.03 * 10 ** (0.4 * (mag - 14.0))) ** 2)
        cols[b] = mag + err * rng.standard_normal(m)
        cols[f"{b}_ERR"] = err
    bad = rng.random(m) < BAD_2MASS_FRACTION
    which = rng.choice(["J", "H", "K"], m)
    for b in "JHK":
        hit = bad & (which == b)
        cols[b][hit] = 99.999
        cols[f"{b}_ERR"][hit] = 99.999
    nan = rng.random(m) < 0.003
    for b in "JHK":
        cols[b][nan] = np.nan
        cols[f"{b}_ERR"][nan] = np.nan
    cols["AK_TARG"] = s["a_v"][base] * 0.112 + rng.normal(0, 0.02, m)
    snr = np.clip(150 * 10 ** (-0.2 * (s["jhk"]["H"][base] - 11.0)) * np.exp(rng.normal(0, 0.3, m)), 20, 2000)
    cols["SNR"] = snr
    starflag = np.zeros(m, dtype=np.int64)
    flagged = rng.random(m) < STARFLAG_FRACTION
    starflag[flagged] = 2 ** rng.choice(STARFLAG_BITS, flagged.sum())
    cols["STARFLAG"] = starflag
    cols["GAIAEDR3_SOURCE_ID"] = source_id
    gaia = s["gaia"]
    cols["GAIAEDR3_PARALLAX"] = np.where(source_id > 0, gaia["parallax"][base], np.nan)
    cols["GAIAEDR3_PARALLAX_ERROR"] = np.where(source_id > 0, gaia["parallax_error"][base], np.nan)
    cols["GAIAEDR3_PHOT_G_MEAN_MAG"] = np.where(source_id > 0, gaia["phot_g_mean_mag"][base], np.nan)
    aspcap = np.where(rng.random(m) < 0.4, 2 ** rng.choice(ASPCAP_HARMLESS_BITS, m), 0).astype(np.int64)
    bad_aspcap = rng.random(m) < ASPCAP_BAD_FRACTION
    aspcap[bad_aspcap] |= 2 ** rng.choice(ASPCAP_BAD_BITS, bad_aspcap.sum())
    missing = rng.random(m) < ASPCAP_MISSING_FRACTION
    aspcap[missing] |= 2 ** 23
    cols["ASPCAPFLAG"] = aspcap
    cols["EXTRATARG"] = np.where(is_dup, 16, 0).astype(np.int32)
    # ASPCAP labels: truth + noise; the noise grows as S/N falls (reported errors = the noise sigma)
    low_snr = np.clip((200 - snr) / 150, 0, 1)
    for name, key, lo, hi in (("TEFF", "teff", 50, 100), ("LOGG", "logg", 0.05, 0.1), ("M_H", "m_h", 0.02, 0.05)):
        err = lo + (hi - lo) * low_snr
        val = s[key][base] + err * rng.standard_normal(m)
        cols[name] = np.where(missing, np.nan, val)
        cols[f"{name}_ERR"] = np.where(missing, np.nan, err)
    # DistMass: truth + noise (mass 7-11 %, age 18-32 % log-normal), BITMASK 2 = outside the grid
    mass_rel = rng.uniform(0.07, 0.11, m)
    age_rel = rng.uniform(0.18, 0.32, m)
    mass = s["mass"][base] * (1 + mass_rel * rng.standard_normal(m))
    age_yr = s["age_gyr"][base] * 1e9 * np.exp(age_rel * rng.standard_normal(m))
    bitmask = np.where(rng.random(m) < DISTMASS_OFF_GRID_FRACTION, 2, 0).astype(np.int32)
    distmass = {"APOGEE_ID": cols["APOGEE_ID"], "MASS": mass, "MASS_ERR": mass_rel * mass,
                "AGE": age_yr, "AGE_ERR": age_rel * age_yr,
                "DISTANCE": s["distance"][base] * 1000 * (1 + 0.05 * rng.standard_normal(m)),
                "BITMASK": bitmask}
    return cols, distmass, base, is_dup, unmatched


# ----------------------------------------------------------------------------- writers
class _H5Appender:
    """Column table streamed to HDF5 (resizable datasets), renamed into place on close."""

    def __init__(self, path: Path, dtypes: dict):
        self._ctx = atomic_path(path)
        self._tmp = self._ctx.__enter__()
        self.file = h5py.File(self._tmp, "w")
        self.dtypes = dtypes
        self.n = 0

    def append(self, cols: dict):
        m = len(cols["source_id"])
        for name, dtype in self.dtypes.items():
            arr = np.asarray(cols[name]).astype(dtype)
            if name not in self.file:
                self.file.create_dataset(name, data=arr, maxshape=(None,) + arr.shape[1:],
                                         chunks=(4096,) + arr.shape[1:])
            else:
                ds = self.file[name]
                ds.resize(self.n + m, axis=0)
                ds[self.n:] = arr
        self.n += m

    def close(self, attrs: dict):
        for k, v in attrs.items():
            self.file.attrs[k] = v
        self.file.close()
        self._ctx.__exit__(None, None, None)

    def abort(self):
        self.file.close()
        self._ctx.__exit__(RuntimeError, RuntimeError(), None)


def _write_fits(path: Path, columns: dict, formats: dict, extname: str) -> None:
    from astropy.io import fits

    cols = [fits.Column(name=name, format=fmt, array=np.asarray(columns[name]))
            for name, fmt in formats.items()]
    hdu = fits.BinTableHDU.from_columns(cols, name=extname)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)


# ----------------------------------------------------------------------------- the stage
def make_mock_survey(out_dir: str | os.PathLike, n_stars: int = 20000, seed: int = 20260101,
                     xp_format: str = "fits") -> dict[str, Path]:
    """Generate the mock survey (``n_stars`` allStar rows) under ``out_dir``; return the paths."""
    from tqdm import tqdm
    from zero_point import zpt

    if not isinstance(n_stars, (int, np.integer)) or n_stars < MIN_STARS:
        raise StarfmInputError(f"--n-stars: need an integer >= {MIN_STARS} (got {n_stars!r}); "
                               "the survey's flag and duplicate fractions need at least that many rows")
    if xp_format not in XP_FORMATS:
        raise StarfmInputError(f"--xp-format: '{xp_format}' is not one of {list(XP_FORMATS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise StarfmInputError(f"--seed: need a non-negative integer (got {seed!r})")
    out = Path(out_dir)
    paths = {"allstar": out / "apogee" / ALLSTAR_NAME, "distmass": out / "apogee" / DISTMASS_NAME,
             "manifest": out / "gaia_archive" / "manifest.json",
             "gaia_source": out / "gaia_archive" / "gaia_source.h5",
             "xp_continuous": out / "gaia_archive" / "xp_continuous.h5",
             "dust_map": out / "dust" / "combined19" / "combine19.h5", "truth": out / "truth.h5"}

    log.info("mock survey: %d allStar rows, seed %d, into %s", n_stars, seed, out)
    nside, hpix, best_fit = build_dust_map(np.random.default_rng([seed, 0]))
    write_combined19(paths["dust_map"], nside, hpix, best_fit)
    log.info("dust map: %d pixels (nside 64/128) -> %s", len(hpix), paths["dust_map"])
    dust = DustMapEvaluator(nside, hpix, best_fit)
    fields = make_fields(n_stars, np.random.default_rng([seed, 2]))
    zpt.load_tables()
    mock_spectra.xp_basis()

    gaia_writer = _H5Appender(paths["gaia_source"], GAIA_SOURCE_DTYPES)
    xp_writer = _H5Appender(paths["xp_continuous"], XP_DTYPES)
    allstar_parts, distmass_parts, truth_parts = [], [], []
    seen_source_ids = np.empty(0, dtype=np.int64)
    seen_apogee_ids: set[str] = set()
    n_chunks = -(-n_stars // CHUNK_SIZE)
    try:
        for ci in tqdm(range(n_chunks), desc="mock survey chunks", disable=n_chunks < 2):
            n_rows = min(CHUNK_SIZE, n_stars - ci * CHUNK_SIZE)
            s = _chunk(n_rows, ci, seed, fields, dust, zpt)
            rng = np.random.default_rng([seed, 3, ci])
            s["source_id"] = _deduplicate_ids(s["source_id"], seen_source_ids, rng)
            s["gaia"]["source_id"] = s["xp"]["source_id"] = s["source_id"]
            seen_source_ids = np.concatenate([seen_source_ids, s["source_id"]])
            s["apogee_id"] = _unique_apogee_ids(_apogee_ids(s["ra"], s["dec"]), seen_apogee_ids)
            cols, distmass, base, is_dup, unmatched = _apogee_rows(s, fields, rng)
            matched = ~unmatched
            gaia_writer.append({k: v[matched] for k, v in s["gaia"].items() if not k.startswith("_")})
            keep = matched & s["xp"]["_has_xp"]
            xp_writer.append({k: v[keep] for k, v in s["xp"].items() if not k.startswith("_")})
            allstar_parts.append(cols)
            distmass_parts.append(distmass)
            truth_parts.append(_truth_columns(s, base, is_dup, unmatched, keep))
            log.info("chunk %d/%d: %d rows (%d duplicates), %d Gaia sources, %d with XP",
                     ci + 1, n_chunks, n_rows, is_dup.sum(), matched.sum(), keep.sum())
    except BaseException:
        gaia_writer.abort()
        xp_writer.abort()
        raise
    common = {"seed": int(seed), "n_allstar_rows": int(n_stars)}
    gaia_writer.close({**common, "table": "gaiadr3.gaia_source (mock)"})
    xp_writer.close({**common, "table": "gaiadr3.xp_continuous_mean_spectrum (mock), no correlations"})

    def cat(parts):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    _write_fits(paths["allstar"], cat(allstar_parts), ALLSTAR_FORMATS, "allStar")
    _write_fits(paths["distmass"], cat(distmass_parts), DISTMASS_FORMATS, "DistMass")
    truth = cat(truth_parts)
    write_table(paths["truth"], truth, attrs={
        "extinction_law": EXTINCTION_LAW, "r_v": R_V, "ebv_true_over_sfd": EBV_TRUE_OVER_SFD,
        "extinction_convention": "A(lambda) = 3.1 * 0.884 * ebv * F99(lambda)/A_V; ebv on the SFD scale",
        "ebv_evaluation": "written Combined19 map at the true distance: finest HEALPix level, linear in "
                          "distance modulus (as mwdust.Combined19)",
        "parallax_zero_point": "Lindegren+2021 zpt.get_zpt + 0.005*clip(G-13,0,4) mas",
        "age_unit": "Gyr", "mass_age_relation": "t_MS = 10 Gyr 10^(0.15 [M/H]) M^-2.5",
        **common})
    manifest = {"n_sources": int(gaia_writer.n), "n_xp_sources": int(xp_writer.n),
                "n_allstar_rows": int(n_stars), "seed": int(seed), "xp_format": xp_format,
                "gaia_source": paths["gaia_source"].name, "xp_continuous": paths["xp_continuous"].name,
                "solution_id": DR3_SOLUTION_ID,
                "xp_columns_omitted": ["bp_coefficient_correlations", "rp_coefficient_correlations"]}
    with atomic_path(paths["manifest"]) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("wrote %d allStar rows, %d Gaia sources, %d with XP", n_stars, gaia_writer.n, xp_writer.n)
    return paths


def _deduplicate_ids(ids, seen, rng):
    """Redraw the running-number part of any source_id already used (rare; deterministic)."""
    ids = ids.copy()
    while True:
        _, first = np.unique(ids, return_index=True)
        clash = np.ones(len(ids), bool)
        clash[first] = False
        clash |= np.isin(ids, seen)
        if not clash.any():
            return ids
        ids[clash] = (ids[clash] // HEALPIX12_FACTOR) * HEALPIX12_FACTOR \
            + rng.integers(1, 2 ** 35 - 1, clash.sum())


def _unique_apogee_ids(ids, seen: set):
    """Two stars closer than 0.15 arcsec would share an APOGEE_ID: bump the last digit (rare)."""
    ids = ids.astype("<U30")
    _, first = np.unique(ids, return_index=True)
    clash = np.ones(len(ids), bool)
    clash[first] = False
    clash |= np.isin(ids, list(seen)) if seen else False
    for i in np.flatnonzero(clash):                       # a handful at most: loop over clashes only
        base = ids[i][:-1]
        for digit in "0123456789":
            cand = base + digit
            if cand not in seen and cand not in ids:
                ids[i] = cand
                break
    seen.update(ids.tolist())
    return ids


def _truth_columns(s, base, is_dup, unmatched, has_xp_base) -> dict:
    return {"apogee_id": s["apogee_id"][base],
            "source_id": np.where(unmatched, 0, s["source_id"])[base],
            "mass": s["mass"][base], "age_gyr": s["age_gyr"][base], "m_h": s["m_h"][base],
            "teff": s["teff"][base], "logg": s["logg"][base], "luminosity": s["luminosity"][base],
            "radius": s["radius"][base], "distance_kpc": s["distance"][base], "ebv": s["ebv"][base],
            "a_v": s["a_v"][base], "parallax_true": s["gaia"]["_parallax_true"][base],
            "parallax_zero_point": s["gaia"]["_zero_point"][base], "g_mag": s["g_true"][base],
            "bp_rp": s["bp_rp_true"][base], "h_mag": s["jhk"]["H"][base],
            "glon": s["glon"][base], "glat": s["glat"][base],
            "is_red_clump": s["is_red_clump"][base], "is_duplicate": is_dup,
            "has_xp": has_xp_base[base]}


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("mock-survey", "Generate the seeded mock survey (allStar, DistMass, Gaia "
                          "archive store, Combined19 dust map, truth) in the real files' formats.")
    parser.add_argument("--n-stars", type=int, default=20000,
                        help=f"allStar-like rows (733901 = the real DR17 size; at least {MIN_STARS})")
    parser.add_argument("--seed", type=int, default=20260101, help="seed of every random step")
    parser.add_argument("--xp-format", default="fits", choices=XP_FORMATS,
                        help="format in which MockGaiaArchive serves XP tables (recorded in manifest.json)")
    parser.add_argument("--out-dir", required=True, help="output directory (e.g. results/mock)")
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    make_mock_survey(args.out_dir, n_stars=args.n_stars, seed=args.seed, xp_format=args.xp_format)
    return 0
