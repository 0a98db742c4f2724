"""The mock survey's stellar population: plates, stars and their distances.

- *Stars*, a parametric population calibrated on the real asteroseismic giants of
  ``../shared/realdata/labels`` (fits by least squares; :mod:`starfm.mock.realism` and
  tests/test_mock_realism.py compare the two with one recipe):

  * evolutionary state: 45 % red clump (APOKASC-3 gold: 47 %; Miglio et al. 2021: 27 %);
  * components: low-alpha disk; high-alpha (thick) disk, 10 % in disk fields and 40 % in bulge
    and halo fields (Miglio 2021: 10 % have [alpha/M] > 0.1), mass lnN(0.98, 0.07), [M/H]
    N(-0.28, 0.20), [alpha/M] N(0.17, 0.04); a halo (10 % of halo-field stars), mass 0.86,
    [M/H] N(-1.3, 0.4), [alpha/M] 0.25;
  * low-alpha mass: log-normal, median 1.30 (RGB) / 1.29 (RC), sigma 0.13 in ln M, plus an 8 %
    secondary clump lnN(1.95, 0.14) among RC stars; [M/H] N(0.05, 0.19) (bulge N(0, 0.32)).
    Together: median 1.27, spread 0.21 Msun (APOKASC-3: 1.26, 0.19; Miglio: 1.24, 0.24);
  * age: ln(t/Gyr) = 2.386 - 3.476 ln M + 0.521 [M/H] + 0.443 [alpha/M] (RGB) and
    2.197 - 2.963 ln M + 0.483 [M/H] + 0.181 [alpha/M] (RC), + N(0, 0.05): least-squares fits to
    Miglio 2021 (whose ages are model ages of mass and composition: residual 0.05);
    :func:`isochrone_age` is that relation (DistMass's ages use it, :mod:`starfm.mock.apogee`);
  * [alpha/M] (low-alpha) = 0.005 + 0.006 (t0 - 4 Gyr) - 0.04 [M/H] + N(0, 0.015), t0 the age
    without the alpha term (Miglio 2021: median [alpha/M] 0.01 at 2-6 Gyr rising to 0.15 above
    10 Gyr);
  * [C/N] (first dredge-up) = -0.236 - 0.362 (M - 1.25) - 0.109 [M/H] + N(0, 0.06) (RGB) and
    -0.245 - 0.377 (M - 1.25) + 0.004 [M/H] + N(0, 0.058) (RC): fits to APOKASC-3 (the RC
    offset at fixed mass is -0.01 dex in that sample);
  * logg: RGB p ~ exp((logg - 3.4)/0.7) on [1.0, 3.4] (more stars at the base of the RGB);
    RC 2.438 + 0.245 (M - 1.25) - 0.041 [M/H] + N(0, 0.022) (APOKASC-3 fit: heavier clump
    stars sit higher);
  * Teff = c + a (logg - 2.5) + b [M/H] + d (M - 1.25) + e [alpha/M] + N(0, s), APOKASC-3 fits:
    RGB (4602, 473, -527, 155, -611, 20 K), RC (4776, 645, -575, 22, -236, 27 K), in 3500-5600 K;
  * the coefficients are the least-squares fits; the intrinsic scatters (RGB Teff 20 K, RC logg
    0.022, [C/N] 0.06, [alpha/M] 0.015) are set smaller than the fits' residuals (35 K, 0.042,
    0.07-0.09, -) so that the cross-validated information ratios match the real samples' (a
    linear fit's residual also holds the relations' curvature, which a flexible regressor uses);
  * L = M Teff^4 / g, R = sqrt(L)/Teff^2 (solar units).

  Figures (4,000 stars, the survey's field mix; mock vs real): mass median 1.27 vs 1.26/1.24,
  spread 0.21-0.22 vs 0.19/0.24; information ratio of mass from Teff, logg, [M/H] 0.48-0.51 vs
  0.52 (APOKASC-3), adding [C/N] 0.42-0.44 vs 0.43; of ln age from [M/H], [alpha/M] 0.60-0.61 vs
  0.60 (Miglio). On the default run's truth (19,000 distinct stars): median 1.26, spread 0.22,
  ratios 0.45, 0.40 and 0.59 (more training stars: a little lower).
- *Positions.* APOGEE-like plates (1.5 deg radius): disk fields |b| < 20 deg, bulge fields, halo
  fields |b| > 20 deg. Distances from an APOGEE-like H-magnitude selection (H mostly 7-12.2, a
  deeper 12.2-13.8 tail), solved with the extinction along the sightline, kept in 0.5-15 kpc.
  A star's map E(B-V) (SFD scale) is the written dust map at its true distance; its true E(B-V)
  is that times a log-normal error plus an offset (``mock.ebv_map_scatter``/``ebv_map_offset``,
  :mod:`starfm.mock.survey`), and its extinction A(lambda) = R_V * 0.884 * E_SFD * F99(lambda;
  R_V)/A_V (Leung & Bovy eq. 10; R_V = ``mock.extinction_r_v``, default 3.1).
"""
from __future__ import annotations

import numpy as np

from starfm.constants import EBV_TRUE_OVER_SFD, R_V
from starfm.dust_map import Combined19Map, interpolate_ebv

T_SUN = 5772.0
LOGG_SUN = 4.438


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
    ra, dec = gal_to_icrs(glon, glat)
    telescope = np.where(dec < -15, "lco25m", "apo25m").astype("<U6")
    telescope[rng.random(n_fields) < 0.02] = "apo1m"
    lab = np.round(glon).astype(int) % 360
    name = np.char.add(np.char.zfill(lab.astype(str), 3),
                       np.char.add(np.where(glat >= 0, "+", "-"),
                                   np.char.zfill(np.abs(np.round(glat)).astype(int).astype(str), 2)))
    name = np.where(kind == 1, np.char.add("BLG", name), name)
    return {"kind": kind, "glon": glon, "glat": glat, "telescope": telescope, "name": name}


def gal_to_icrs(glon, glat):
    """ICRS (ra, dec) [deg] of galactic (l, b) [deg]."""
    from astropy.coordinates import SkyCoord
    import astropy.units as u

    c = SkyCoord(l=np.asarray(glon) * u.deg, b=np.asarray(glat) * u.deg, frame="galactic").icrs
    return c.ra.deg, c.dec.deg


# --- the calibrated population (fits to APOKASC-3 Table 4 and Miglio et al. 2021; module docstring)
RC_FRACTION = 0.45                 # APOKASC-3 gold 47 %, Miglio 2021 27 %
HIGH_ALPHA_FRACTION = {0: 0.10, 1: 0.40, 2: 0.40}   # disk, bulge, halo fields (Miglio: 10 % with [a/M] > 0.1)
HALO_FRACTION_IN_HALO_FIELDS = 0.10
# ln M of the low-alpha population: log-normal per state, plus a secondary-clump tail for RC
MASS_LN_MEDIAN = {"rgb": np.log(1.30), "rc": np.log(1.29)}
MASS_LN_SIGMA = {"rgb": 0.13, "rc": 0.13}
SECONDARY_CLUMP_FRACTION = 0.08
SECONDARY_CLUMP_MASS = (np.log(1.95), 0.14)
# ln(age/Gyr) = c + a ln M + b [M/H] + d [a/M] (Miglio 2021 fits, per state; residual 0.05)
AGE_RELATION = {"rgb": (2.3855, -3.4756, 0.5211, 0.4429), "rc": (2.1974, -2.9632, 0.4834, 0.1808)}
AGE_LN_SCATTER = 0.05
# Teff = c + a (logg - 2.5) + b [M/H] + d (M - 1.25) + e [a/M] + N(0, s) (APOKASC-3 fits per state)
TEFF_RELATION = {"rgb": (4602.3, 472.6, -527.2, 154.6, -610.7, 20.0),
                 "rc": (4776.4, 644.6, -575.4, 21.9, -235.7, 27.3)}
# [C/N] = c + a (M - 1.25) + b [M/H] + N(0, s) (APOKASC-3 fits per state: first dredge-up)
CN_RELATION = {"rgb": (-0.2364, -0.3618, -0.1090, 0.060), "rc": (-0.2448, -0.3765, 0.0035, 0.058)}
# RC logg = c + a (M - 1.25) + b [M/H] + N(0, s) (APOKASC-3)
RC_LOGG_RELATION = (2.4378, 0.2452, -0.0407, 0.022)


def isochrone_age(mass, m_h, alpha_m=0.0, red_clump=False):
    """Age [Gyr] of a giant of (current) mass ``mass`` [Msun], [M/H] and [alpha/M]: the mock's
    isochrone-like relation (:data:`AGE_RELATION`, RGB or RC), no scatter; clipped to 0.2-13.8 Gyr."""
    mass, m_h, alpha_m = (np.asarray(x, dtype=float) for x in (mass, m_h, alpha_m))
    out = {}
    for state, (c, a, b, d) in AGE_RELATION.items():
        out[state] = np.exp(c + a * np.log(np.clip(mass, 0.3, None)) + b * m_h + d * alpha_m)
    return np.clip(np.where(red_clump, out["rc"], out["rgb"]), 0.2, 13.8)


def first_dredge_up_c_n(mass, m_h, is_red_clump, rng: np.random.Generator) -> np.ndarray:
    """[C/N] of giants after the first dredge-up: :data:`CN_RELATION` of their state (RGB rows
    drawn first, then RC) plus its scatter, clipped to -1.2..0.4."""
    mass, m_h = np.asarray(mass, float), np.asarray(m_h, float)
    is_red_clump = np.asarray(is_red_clump, bool)
    c_n = np.empty(len(mass))
    for state, sel in (("rgb", ~is_red_clump), ("rc", is_red_clump)):
        c, a, b, s = CN_RELATION[state]
        c_n[sel] = c + a * (mass[sel] - 1.25) + b * m_h[sel] + rng.normal(0, s, sel.sum())
    return np.clip(c_n, -1.2, 0.4)


def luminosity_radius(mass, teff, logg):
    """(L, R) in solar units of stars of mass [Msun], Teff [K], logg: L = M Teff^4 / g, R =
    sqrt(L) / Teff^2."""
    luminosity = mass * (teff / T_SUN) ** 4 / 10 ** (logg - LOGG_SUN)
    return luminosity, np.sqrt(luminosity) / (teff / T_SUN) ** 2


def draw_stars(n: int, field_kind: np.ndarray, rng: np.random.Generator) -> dict:
    """True mass, age, [M/H], [alpha/M], [C/N], Teff, logg, L, R and evolutionary state of ``n``
    giants (population calibrated on APOKASC-3 and Miglio et al. 2021; module docstring)."""
    kind = np.asarray(field_kind)
    is_rc = rng.random(n) < RC_FRACTION
    state = np.where(is_rc, "rc", "rgb")
    # components: low-alpha disk, high-alpha (thick) disk, halo (halo fields only)
    p_high = np.choose(kind, [HIGH_ALPHA_FRACTION[0], HIGH_ALPHA_FRACTION[1], HIGH_ALPHA_FRACTION[2]])
    u = rng.random(n)
    halo = (kind == 2) & (u < HALO_FRACTION_IN_HALO_FIELDS)
    high = ~halo & (rng.random(n) < p_high)
    # [M/H]: low-alpha ~ N(0.05, 0.19) (bulge broader), high-alpha N(-0.28, 0.20), halo N(-1.3, 0.4)
    m_h = np.where(kind == 1, rng.normal(0.0, 0.32, n), rng.normal(0.05, 0.19, n))
    m_h = np.where(high, rng.normal(-0.28, 0.20, n), m_h)
    m_h = np.where(halo, rng.normal(-1.3, 0.4, n), m_h)
    m_h = np.clip(m_h, -2.4, 0.55)
    # current mass
    ln_m = np.where(is_rc, rng.normal(MASS_LN_MEDIAN["rc"], MASS_LN_SIGMA["rc"], n),
                    rng.normal(MASS_LN_MEDIAN["rgb"], MASS_LN_SIGMA["rgb"], n))
    second = is_rc & (rng.random(n) < SECONDARY_CLUMP_FRACTION)
    ln_m = np.where(second, rng.normal(*SECONDARY_CLUMP_MASS, n), ln_m)
    ln_m = np.where(high, rng.normal(np.log(0.98), 0.07, n), ln_m)
    ln_m = np.where(halo, rng.normal(np.log(0.86), 0.05, n), ln_m)
    mass = np.clip(np.exp(ln_m), 0.7, 3.0)
    # [alpha/M]: low-alpha rises slowly with age (from the isochrone age without the alpha term),
    # high-alpha / halo ~ 0.17-0.25 (Miglio: median 0.15 above 10 Gyr)
    age0 = isochrone_age(mass, m_h, 0.0, is_rc)
    alpha_m = 0.005 + 0.006 * (age0 - 4.0) - 0.04 * m_h + rng.normal(0, 0.015, n)
    alpha_m = np.where(high, rng.normal(0.17, 0.04, n), alpha_m)
    alpha_m = np.where(halo, rng.normal(0.25, 0.06, n), alpha_m)
    alpha_m = np.clip(alpha_m, -0.15, 0.45)
    age = np.clip(isochrone_age(mass, m_h, alpha_m, is_rc) * np.exp(rng.normal(0, AGE_LN_SCATTER, n)), 0.2, 13.8)
    # [C/N]: first dredge-up (falls with mass), per state
    c_n = first_dredge_up_c_n(mass, m_h, is_rc, rng)
    # logg: RGB from a luminosity-function-like p ~ exp((logg - 3.4)/0.7) on [1.0, 3.4]; RC 2.44
    u = rng.random(n)
    lo = np.exp((1.0 - 3.4) / 0.7)
    logg_rgb = 3.4 + 0.7 * np.log(lo + u * (1 - lo))
    c, a, b, s = RC_LOGG_RELATION
    logg_rc = c + a * (mass - 1.25) + b * m_h + rng.normal(0, s, n)
    logg = np.where(is_rc, logg_rc, logg_rgb)
    teff = np.empty(n)
    for st in ("rgb", "rc"):
        c, a, b, d, e, s = TEFF_RELATION[st]
        sel = state == st
        teff[sel] = (c + a * (logg[sel] - 2.5) + b * m_h[sel] + d * (mass[sel] - 1.25) + e * alpha_m[sel]
                     + rng.normal(0, s, sel.sum()))
    # metal-poor giants are hotter; the linear fit is calibrated on [Fe/H] > -0.45: cap the term
    teff = np.clip(teff, 3500, 5600)
    luminosity, radius = luminosity_radius(mass, teff, logg)
    return {"mass": mass, "age_gyr": age, "m_h": m_h, "alpha_m": alpha_m, "c_n": c_n, "teff": teff,
            "logg": logg, "luminosity": luminosity, "radius": radius, "is_red_clump": is_rc}


def draw_positions(n: int, fields: dict, rng: np.random.Generator):
    """A plate for each of ``n`` stars, then a uniform position within 1.5 deg of its centre:
    (plate index, glon, glat, ra, dec)."""
    f = rng.integers(0, len(fields["kind"]), n)
    r, pa = 1.5 * np.sqrt(rng.random(n)), rng.uniform(0, 2 * np.pi, n)
    glat = np.clip(fields["glat"][f] + r * np.sin(pa), -89.9, 89.9)
    glon = (fields["glon"][f] + r * np.cos(pa) / np.cos(np.radians(glat))) % 360
    ra, dec = gal_to_icrs(glon, glat)
    return f, glon, glat, ra, dec


def select_distances(abs_h, k_h: float, glon, glat, dust: Combined19Map, rng: np.random.Generator,
                     r_v: float = R_V, h_target=None):
    """Distances [kpc] from an APOGEE-like H selection with the extinction along the sightline,
    and the map's E(B-V)_SFD there: (distance, ebv_map). ``k_h`` = A_H / A_V. ``h_target``: the
    apparent H each star is placed at (default: drawn from the APOGEE-like selection here)."""
    n = len(abs_h)
    if h_target is None:
        band = rng.random(n)
        h_target = np.where(band < 0.75, 12.2 + np.log10(1 - rng.random(n) * (1 - 10 ** (-0.3 * 5.2))) / 0.3,
                            np.where(band < 0.95, rng.uniform(12.2, 13.8, n), rng.uniform(5.0, 7.0, n)))
    a_v_per_ebv = r_v * EBV_TRUE_OVER_SFD
    curves, row = dust.lines_of_sight(glon, glat)       # each sightline looked up once
    # stars the selection would put nearer than 0.5 kpc (farther than 15) are moved just inside
    # the range (they become fainter/brighter targets) rather than piled up on the limit
    near, far = 0.5 + rng.exponential(0.3, n), 15.0 - rng.exponential(1.5, n)
    distance = np.clip(10 ** ((h_target - abs_h - 10) / 5), 0.5, 15.0)
    for _ in range(4):
        ebv = np.nan_to_num(interpolate_ebv(curves, row, distance))
        distance = 10 ** ((h_target - abs_h - a_v_per_ebv * ebv * k_h - 10) / 5)
        distance = np.clip(np.where(distance < 0.5, near, np.where(distance > 15.0, far, distance)), 0.5, 15.0)
    return distance, interpolate_ebv(curves, row, distance)
