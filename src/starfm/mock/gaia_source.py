"""The mock survey's ``gaia_source`` rows: source ids, astrometry, photometry, parallax zero point.

source_id = HEALPix level-12 (nested) index * 2^35 + a running number, as Gaia's. G and BP-RP
are the synthetic photometry of the noise-free XP coefficients (:mod:`starfm.mock.spectra`) plus
noise. Parallax = 1/d + the Lindegren et al. (2021) zero-point (``zero_point.zpt.get_zpt``) +
0.005 clip(G - 13, 0, 4) mas + a residual the recipe does not remove (offset + per-plate scatter,
``mock.parallax_zp_residual_mas`` / ``_scatter_mas``, default 0.01 and 0.01 mas: of the order of
the residuals asteroseismic and cluster tests find after the L21 correction) + noise.
"""
from __future__ import annotations

import warnings

import numpy as np

from starfm.xp_tables import GAIA_SOURCE_DTYPES

EXTRA_ZERO_POINT_MAS = 0.005       # paper: + 0.005 clip(G - 13, 0, 4) mas
HEALPIX12_FACTOR = 2 ** 35         # Gaia source_id = HEALPix level-12 (nested) index * 2^35 + n
PARAMS_2P_FRACTION = 0.01          # astrometric_params_solved = 3
# the mock store's gaia_source.h5: the gaia-source columns plus the positions, archive dtypes
GAIA_SOURCE_STORE_DTYPES = {"source_id": "i8", "ra": "f8", "dec": "f8", "l": "f8", "b": "f8",
                            **{k: v for k, v in GAIA_SOURCE_DTYPES.items() if k != "source_id"}}


def source_ids(ra, dec, rng):
    """Gaia-like source_ids: HEALPix level-12 index of (ra, dec) * 2^35 + a random running number."""
    import healpy

    hp12 = healpy.ang2pix(4096, np.radians(90 - dec), np.radians(ra), nest=True).astype(np.int64)
    return hp12 * HEALPIX12_FACTOR + rng.integers(1, HEALPIX12_FACTOR - 1, len(ra))


def gaia_source_rows(s: dict, rng, zpt_module, zp_residual=0.0) -> dict:
    """``gaia_source`` columns of a chunk's stars ``s`` (plus ``_parallax_true``, ``_zero_point``
    (everything injected) and ``_zero_point_residual`` for the truth); ``zpt_module`` is
    ``zero_point.zpt`` with its tables loaded; ``zp_residual`` [mas] (scalar or per star) is added
    on top of the recipe's zero point."""
    n = s["n"]
    g = (s["g_true"] + rng.normal(0, 0.003, n)).astype(np.float32)
    bp_rp = (s["bp_rp_true"] + rng.normal(0, 0.01, n)).astype(np.float32)
    solved = np.where(rng.random(n) < 0.12 + 0.1 * np.clip(g - 15, 0, 3), 95, 31).astype(np.int16)
    solved[rng.random(n) < PARAMS_2P_FRACTION] = 3
    # a source whose BP flux is not positive (behind A_V >~ 10) has no BP-RP: as in DR3 it gets a
    # 6-parameter solution (pseudocolour), at the red end of the nu_eff range
    solved = np.where(np.isfinite(bp_rp) | (solved == 3), solved, 95).astype(np.int16)
    nu = np.clip(1.76 - 1.61 / np.pi * np.arctan(0.531 * np.nan_to_num(bp_rp.astype(float), nan=10.0)), 1.24, 1.72)
    nu_eff = np.where(solved == 31, nu, np.nan).astype(np.float32)
    pseudo = np.where(solved == 95, np.clip(nu + rng.normal(0, 0.03, n), 1.24, 1.72), np.nan).astype(np.float32)
    ecl_lat = ecliptic_latitude(s["ra"], s["dec"])
    # parallax: truth + Lindegren zero-point + the paper's extra term + noise
    sigma = np.sqrt(0.015 ** 2 + (0.149 * 10 ** (0.2 * (g.astype(float) - 17.5))) ** 2) \
        * np.exp(rng.normal(0, 0.15, n))
    zero_point = np.full(n, np.nan)
    ok = solved != 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zero_point[ok] = zpt_module.get_zpt(g[ok].astype(float), nu_eff[ok].astype(float),
                                            pseudo[ok].astype(float), ecl_lat[ok], solved[ok].astype(float))
    zero_point += EXTRA_ZERO_POINT_MAS * np.clip(g.astype(float) - 13, 0, 4)
    residual = np.broadcast_to(np.asarray(zp_residual, dtype=float), (n,)).copy()
    zero_point += residual
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
            "_parallax_true": parallax_true, "_zero_point": zero_point, "_zero_point_residual": residual}


def deduplicate_ids(ids, seen, rng):
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
            + rng.integers(1, HEALPIX12_FACTOR - 1, clash.sum())


def ecliptic_latitude(ra, dec):
    """Barycentric mean ecliptic latitude [deg] of ICRS (ra, dec)."""
    from astropy.coordinates import BarycentricMeanEcliptic, SkyCoord
    import astropy.units as u

    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, frame="icrs")
    return c.transform_to(BarycentricMeanEcliptic()).lat.deg
