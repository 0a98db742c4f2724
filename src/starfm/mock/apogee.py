"""The mock survey's APOGEE rows: allStar and DistMass in the real DR17 columns, dtypes and flags.

Each star gets an allStar row (real column names and bad-value conventions: 99.999 / NaN 2MASS
magnitudes, STARFLAG / ASPCAPFLAG bits, GAIAEDR3_SOURCE_ID 0 when unmatched); 5 % are observed
twice (second row: EXTRATARG bit 4, another telescope or plate). ASPCAP labels are the truth plus
noise growing as S/N falls (Teff, logg, [M/H], [alpha/M], [C/Fe], [N/Fe]).

DistMass rows are made the way the DistMass VAC makes them (its public early build script): MASS
is a neural network's estimate from the APOGEE labels Teff, logg, [M/H], [C/Fe], [N/Fe] trained on
APOKASC masses. Here the network is emulated by its limit, the conditional mean: ln MASS is a
least-squares quadratic in the *observed* (noisy) Teff, logg, [M/H], [C/N], fitted to the true
ln mass of the stars inside the trained parameter space (:data:`DISTMASS_TRAINED_SPACE`), plus
N(0, :data:`DISTMASS_NN_SCATTER`) network noise; so its errors come from the label noise and
from what the labels cannot say about mass. MASS_ERR = (0.187 - 0.0348 logg) MASS (the script's
formula; ~10 % at logg 2.5). AGE [yr] = the mock's isochrone age
(:func:`starfm.mock.population.isochrone_age`, RGB relation, [alpha/M] = 0: an isochrone grid in
mass and [M/H]) of MASS and the observed [M/H], for logg < 3.5 (NaN otherwise): age errors follow
mass errors (d ln age / d ln MASS = -3.48), AGE_ERR = 3.48 (MASS_ERR / MASS) AGE. BITMASK value
2: outside the trained parameter space (and a random :data:`DISTMASS_OFF_GRID_FRACTION`).
DistMass is row-aligned with allStar.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from starfm.tables import atomic_path

DUPLICATE_FRACTION = 0.05          # stars observed twice (second row: EXTRATARG bit 4)
UNMATCHED_FRACTION = 0.03          # GAIAEDR3_SOURCE_ID = 0
STARFLAG_FRACTION = 0.08
ASPCAP_BAD_FRACTION = 0.05         # ASPCAPFLAG bit 19 (M_H_BAD) or 23 (STAR_BAD)
ASPCAP_MISSING_FRACTION = 0.01     # no ASPCAP result: labels NaN, STAR_BAD set
BAD_2MASS_FRACTION = 0.01          # one band 99.999 (a further 0.3 % NaN)
DISTMASS_OFF_GRID_FRACTION = 0.01  # BITMASK value 2 at random (besides the stars off the trained space)
# the emulated DistMass network's training domain (APOKASC-like giants): name -> (low, high)
DISTMASS_TRAINED_SPACE = {"TEFF": (3900.0, 5300.0), "LOGG": (1.3, 3.5), "M_H": (-1.0, 0.5)}
DISTMASS_NN_SCATTER = 0.03         # network noise, in ln MASS
DISTMASS_AGE_LOGG_MAX = 3.5        # AGE only for logg < 3.5 (as DistMass)

# allStar columns we write, with the real DR17 dtypes (checked against real allStar rows in tests)
ALLSTAR_FORMATS = {
    "APOGEE_ID": "30A", "TELESCOPE": "6A", "FIELD": "20A", "RA": "D", "DEC": "D", "GLON": "D",
    "GLAT": "D", "J": "E", "J_ERR": "E", "H": "E", "H_ERR": "E", "K": "E", "K_ERR": "E",
    "AK_TARG": "E", "SNR": "E", "STARFLAG": "K", "GAIAEDR3_SOURCE_ID": "K", "GAIAEDR3_PARALLAX": "E",
    "GAIAEDR3_PARALLAX_ERROR": "E", "GAIAEDR3_PHOT_G_MEAN_MAG": "E", "ASPCAPFLAG": "K",
    "EXTRATARG": "J", "TEFF": "E", "TEFF_ERR": "E", "LOGG": "E", "LOGG_ERR": "E", "M_H": "E",
    "M_H_ERR": "E", "ALPHA_M": "E", "ALPHA_M_ERR": "E", "C_FE": "E", "C_FE_ERR": "E", "N_FE": "E",
    "N_FE_ERR": "E",
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


def apogee_rows(s: dict, fields: dict, rng, label_errors=None, snr_of_h=None) -> tuple[dict, dict, np.ndarray, np.ndarray, np.ndarray]:
    """allStar and DistMass columns (duplicates included, shuffled), the base-star index of each
    row, whether it is a duplicate, and which base stars have no Gaia match.

    ``label_errors(snr, teff, m_h)``: the ASPCAP errors of the rows, a dict by label key ("teff",
    "logg", "m_h", "alpha_m", ...) (the sky model's, :mod:`starfm.mock.sky_model`); labels it
    lacks, and all of them without it, get errors rising linearly from their low to their high
    value as S/N falls from 200 to 50. ``snr_of_h(h)``: the S/N of rows of true apparent H ``h``
    (the sky model's); without it S/N = 150 x 10^(-0.2 (H - 11)) x lognormal(0.3), in 20-2000."""
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
    if snr_of_h is not None:
        snr = snr_of_h(s["jhk"]["H"][base])
    else:
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
    c_fe = carbon_over_iron(s["c_n"])
    true = {"teff": s["teff"], "logg": s["logg"], "m_h": s["m_h"], "alpha_m": s["alpha_m"],
            "c_fe": c_fe, "n_fe": c_fe - s["c_n"]}
    sky_err = label_errors(snr, s["teff"][base], s["m_h"][base]) if label_errors is not None else {}
    for name, key, lo, hi in (("TEFF", "teff", 50, 100), ("LOGG", "logg", 0.05, 0.1), ("M_H", "m_h", 0.02, 0.05),
                              ("ALPHA_M", "alpha_m", 0.01, 0.03), ("C_FE", "c_fe", 0.02, 0.05),
                              ("N_FE", "n_fe", 0.03, 0.07)):
        err = sky_err[key] if key in sky_err else lo + (hi - lo) * low_snr
        val = true[key][base] + err * rng.standard_normal(m)
        cols[name] = np.where(missing, np.nan, val)
        cols[f"{name}_ERR"] = np.where(missing, np.nan, err)
    distmass = distmass_rows(cols, s["mass"][base], rng)
    distmass["DISTANCE"] = s["distance"][base] * 1000 * (1 + 0.05 * rng.standard_normal(m))
    return cols, distmass, base, is_dup, unmatched


def carbon_over_iron(c_n):
    """[C/Fe] of a giant with [C/N] ``c_n``: the first dredge-up takes ~1/3 of the [C/N] drop
    from carbon, 2/3 from nitrogen ([C/Fe] = -0.03 + 0.35 ([C/N] + 0.25); [N/Fe] = [C/Fe] - [C/N])."""
    return -0.03 + 0.35 * (np.asarray(c_n, dtype=float) + 0.25)


def _quadratic_features(x: np.ndarray) -> np.ndarray:
    """[1, x_i, x_i x_j (i <= j)] of standardised columns (n, k)."""
    n, k = x.shape
    terms = [np.ones(n)] + [x[:, i] for i in range(k)]
    terms += [x[:, i] * x[:, j] for i in range(k) for j in range(i, k)]
    return np.stack(terms, axis=1)


def distmass_rows(cols: dict, true_mass: np.ndarray, rng) -> dict:
    """DistMass MASS, MASS_ERR, AGE, AGE_ERR, BITMASK from the allStar labels ``cols`` (module
    docstring): the emulated network's mass and the isochrone age of that mass."""
    from starfm.mock.population import isochrone_age

    m = len(true_mass)
    c_n = cols["C_FE"] - cols["N_FE"]
    labels = np.column_stack([cols["TEFF"], cols["LOGG"], cols["M_H"], c_n])
    finite = np.all(np.isfinite(labels), axis=1)
    inside = finite.copy()
    for name, (lo, hi) in DISTMASS_TRAINED_SPACE.items():
        with np.errstate(invalid="ignore"):
            inside &= (cols[name] >= lo) & (cols[name] <= hi)
    mass = np.full(m, np.nan)
    if inside.sum() > 20:
        centre, scale = labels[inside].mean(axis=0), labels[inside].std(axis=0) + 1e-12
        design = _quadratic_features((labels[finite] - centre) / scale)
        train = inside[finite]
        coef = np.linalg.lstsq(design[train], np.log(true_mass[finite][train]), rcond=None)[0]
        mass[finite] = np.exp(design @ coef + DISTMASS_NN_SCATTER * rng.standard_normal(finite.sum()))
    logg = cols["LOGG"]
    mass_rel = np.clip(0.187 - 0.0348 * logg, 0.03, None)
    with np.errstate(invalid="ignore"):
        has_age = np.isfinite(mass) & (logg < DISTMASS_AGE_LOGG_MAX)
    age_gyr = np.where(has_age, isochrone_age(np.nan_to_num(mass, nan=1.0), np.nan_to_num(cols["M_H"])), np.nan)
    slope = -population_age_slope()
    bitmask = np.where(~inside | (rng.random(m) < DISTMASS_OFF_GRID_FRACTION), 2, 0).astype(np.int32)
    return {"APOGEE_ID": cols["APOGEE_ID"], "MASS": mass, "MASS_ERR": mass_rel * mass,
            "AGE": age_gyr * 1e9, "AGE_ERR": slope * mass_rel * age_gyr * 1e9, "BITMASK": bitmask}


def population_age_slope() -> float:
    """d ln age / d ln mass of the isochrone relation DistMass ages use (RGB)."""
    from starfm.mock.population import AGE_RELATION

    return AGE_RELATION["rgb"][1]


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
