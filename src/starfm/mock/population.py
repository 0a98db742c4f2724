"""The mock survey's stellar population: plates, stars and their distances.

- *Stars.* Ages from a disk star-formation history (older and metal-poor in halo fields, old in
  the bulge); [M/H] from an age-metallicity relation with 0.18 dex scatter; mass = main-sequence
  turn-off mass, t_MS = 10 Gyr 10^(0.15 [M/H]) M^-2.5, kept in 0.7-3 Msun (age recomputed from the
  mass so that the relation holds exactly). 30 % red clump (logg 2.4, secondary clump above
  1.8 Msun), the rest on the RGB (Teff = 5200 - 441.86 (3.65 - logg) - 250 [M/H] + 60 (M - 1.2),
  logg from a luminosity-function-like 0.8-3.6 distribution). L = M Teff^4 / g, R = sqrt(L)/Teff^2.
- *Positions.* APOGEE-like plates (1.5 deg radius): disk fields |b| < 20 deg, bulge fields, halo
  fields |b| > 20 deg. Distances from an APOGEE-like H-magnitude selection (H mostly 7-12.2, a
  deeper 12.2-13.8 tail), solved with the extinction along the sightline, kept in 0.5-15 kpc.
  A star's true E(B-V) (SFD scale) is the written dust map at its true distance; its extinction
  A(lambda) = 3.1 * 0.884 * E_SFD * F99(lambda)/A_V (Leung & Bovy eq. 10).
"""
from __future__ import annotations

import numpy as np

from starfm.constants import EBV_TRUE_OVER_SFD, R_V
from starfm.dust_map import Combined19Map, interpolate_ebv

T_SUN = 5772.0
LOGG_SUN = 4.438
RED_CLUMP_FRACTION = 0.30


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
    luminosity = mass * (teff / T_SUN) ** 4 / 10 ** (logg - LOGG_SUN)
    radius = np.sqrt(luminosity) / (teff / T_SUN) ** 2
    return {"mass": mass, "age_gyr": age, "m_h": m_h, "teff": teff, "logg": logg,
            "luminosity": luminosity, "radius": radius, "is_red_clump": is_rc}


def draw_positions(n: int, fields: dict, rng: np.random.Generator):
    """A plate for each of ``n`` stars, then a uniform position within 1.5 deg of its centre:
    (plate index, glon, glat, ra, dec)."""
    f = rng.integers(0, len(fields["kind"]), n)
    r, pa = 1.5 * np.sqrt(rng.random(n)), rng.uniform(0, 2 * np.pi, n)
    glat = np.clip(fields["glat"][f] + r * np.sin(pa), -89.9, 89.9)
    glon = (fields["glon"][f] + r * np.cos(pa) / np.cos(np.radians(glat))) % 360
    ra, dec = gal_to_icrs(glon, glat)
    return f, glon, glat, ra, dec


def select_distances(abs_h, k_h: float, glon, glat, dust: Combined19Map, rng: np.random.Generator):
    """Distances [kpc] from an APOGEE-like H selection with the extinction along the sightline,
    and the true E(B-V)_SFD there: (distance, ebv). ``k_h`` = A_H / A_V."""
    n = len(abs_h)
    band = rng.random(n)
    h_target = np.where(band < 0.75, 12.2 + np.log10(1 - rng.random(n) * (1 - 10 ** (-0.3 * 5.2))) / 0.3,
                        np.where(band < 0.95, rng.uniform(12.2, 13.8, n), rng.uniform(5.0, 7.0, n)))
    a_v_per_ebv = R_V * EBV_TRUE_OVER_SFD
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
