"""The mock survey's APOGEE rows: allStar and DistMass in the real DR17 columns, dtypes and flags.

Each star gets an allStar row (real column names and bad-value conventions: 99.999 / NaN 2MASS
magnitudes, STARFLAG / ASPCAPFLAG bits, GAIAEDR3_SOURCE_ID 0 when unmatched); 5 % are observed
twice (second row: EXTRATARG bit 4, another telescope or plate). ASPCAP labels are the truth plus
noise growing as S/N falls; DistMass mass and age are the truth with 7-11 % and 18-32 % errors.
DistMass is row-aligned with allStar.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from starfm.io import atomic_path

DUPLICATE_FRACTION = 0.05          # stars observed twice (second row: EXTRATARG bit 4)
UNMATCHED_FRACTION = 0.03          # GAIAEDR3_SOURCE_ID = 0
STARFLAG_FRACTION = 0.08
ASPCAP_BAD_FRACTION = 0.05         # ASPCAPFLAG bit 19 (M_H_BAD) or 23 (STAR_BAD)
ASPCAP_MISSING_FRACTION = 0.01     # no ASPCAP result: labels NaN, STAR_BAD set
BAD_2MASS_FRACTION = 0.01          # one band 99.999 (a further 0.3 % NaN)
DISTMASS_OFF_GRID_FRACTION = 0.03  # BITMASK value 2

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

STARFLAG_BITS = np.array([2, 9, 11, 17, 3])          # BRIGHT_NEIGHBOR, PERSIST_HIGH, ... (set -> label NaN)
ASPCAP_HARMLESS_BITS = np.array([6, 7, 8])           # *_WARN bits: common and harmless
ASPCAP_BAD_BITS = np.array([19, 23])                 # M_H_BAD, STAR_BAD (label NaN downstream)


def apogee_ids(ra, dec):
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


def apogee_rows(s: dict, fields: dict, rng) -> tuple[dict, dict, np.ndarray, np.ndarray, np.ndarray]:
    """allStar and DistMass columns (duplicates included, shuffled), the base-star index of each
    row, whether it is a duplicate, and which base stars have no Gaia match."""
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


def unique_apogee_ids(ids, seen: set):
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


def write_fits(path: Path, columns: dict, formats: dict, extname: str) -> None:
    """One binary-table extension (``formats``: FITS TFORM per column), written atomically."""
    from astropy.io import fits

    cols = [fits.Column(name=name, format=fmt, array=np.asarray(columns[name]))
            for name, fmt in formats.items()]
    hdu = fits.BinTableHDU.from_columns(cols, name=extname)
    with atomic_path(path) as tmp:
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp, overwrite=True)
