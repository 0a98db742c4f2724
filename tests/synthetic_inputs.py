"""Tiny but realistic input tables for the assembly stage (and a dataset.h5 built from them).

Columns, dtypes and units follow ``docs/data_products.md``. By default every star passes every cut
(red giants: G 9-16, BP-RP 1-2.5, ruwe ~1, sigma_parallax < 0.06 mas, 0.8-2.5 Msun, 1-10 Gyr) and
every table holds every star, in a shuffled row order (so a join by row position would fail).
Tests edit the returned column dicts (``tables["gaia_source"]["ruwe"][3] = 1.5``) or drop rows
(:func:`drop_rows`) before :func:`write_inputs`. Other engineers' tests may use
:func:`make_dataset` for a small valid ``dataset.h5``.

    tables = synthetic_tables(n=40, seed=0)
    paths = write_inputs(tmp_path, tables)          # name -> Path, names = assemble()'s arguments
    assemble(**paths, cuts=DEFAULT_CUTS, test_fraction=0.1, split_seed=7, out=tmp_path / "d.h5")
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from starfm.tables import write_table
from starfm.tokenise import CutSettings
from starfm.tokens import g_flux

# the cuts' defaults as a config dict (written once: starfm.tokenise.CutSettings = the schema's)
DEFAULT_CUTS = json.loads(CutSettings().to_json())
TABLE_NAMES = ("labels", "gaia_source", "xp", "parallax", "extinction", "truth")


def synthetic_tables(n: int = 40, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """Column dicts of the five assembly inputs and a truth table for ``n`` red giants."""
    rng = np.random.default_rng(seed)
    source_id = np.sort(rng.choice(np.arange(10**15, 6 * 10**18, 10**12, dtype=np.int64), n,
                                   replace=False))
    apogee_id = np.array([f"2M{rng.integers(0, 24 * 10**6):08d}+{rng.integers(0, 9 * 10**6):07d}"
                          for _ in range(n)])
    k = rng.uniform(7.0, 12.0, n)
    j_k = rng.uniform(0.6, 1.0, n)
    h = k + 0.2 * j_k
    teff = rng.uniform(4200.0, 5100.0, n)
    logg = 1.5 + (teff - 4200.0) / 900.0 * 1.7 + rng.normal(0, 0.1, n)
    mass = rng.uniform(0.8, 2.5, n)
    age = rng.uniform(1.0, 10.0, n)
    m_h = rng.uniform(-0.6, 0.3, n)
    labels = {
        "source_id": source_id, "apogee_id": apogee_id,
        "glon": rng.uniform(0.0, 360.0, n), "glat": rng.uniform(-30.0, 30.0, n),
        "j": k + j_k, "j_err": np.full(n, 0.023), "h": h, "h_err": np.full(n, 0.026),
        "k": k, "k_err": np.full(n, 0.021),
        "teff": teff, "teff_err": np.full(n, 45.0), "logg": logg, "logg_err": np.full(n, 0.05),
        "m_h": m_h, "m_h_err": np.full(n, 0.01),
        # [alpha/M] falls with [M/H] as in the disc (no random draw: the others' stream is kept)
        "alpha_m": 0.1 - 0.15 * m_h, "alpha_m_err": np.full(n, 0.01),
        "mass": mass, "mass_err": 0.08 * mass, "age_gyr": age, "age_gyr_err": 0.25 * age,
    }

    g_mag = k + rng.uniform(2.0, 3.5, n)          # G - K of red giants
    bp_rp = rng.uniform(1.0, 2.5, n)
    parallax = rng.uniform(0.2, 2.0, n)
    zero_point = -0.02 - 0.01 * rng.random(n)
    gaia_source = {
        "source_id": source_id, "parallax": parallax, "parallax_error": rng.uniform(0.015, 0.06, n),
        "phot_g_mean_mag": g_mag, "bp_rp": bp_rp,
        "phot_bp_rp_excess_factor": rng.uniform(1.15, 1.35, n), "ruwe": rng.uniform(0.85, 1.25, n),
        "nu_eff_used_in_astrometry": rng.uniform(1.42, 1.52, n), "pseudocolour": np.full(n, np.nan),
        "ecl_lat": rng.uniform(-60.0, 60.0, n), "astrometric_params_solved": np.full(n, 31, np.int16),
    }

    flux = g_flux(g_mag)[:, None]
    idx = np.arange(55)
    shape = 0.6 * np.exp(-idx / 6.0) * np.cos(0.9 * idx)  # decaying Hermite-like coefficients
    xp = {"source_id": source_id}
    for band, tilt in (("bp", -0.15), ("rp", 0.15)):
        coeff = flux * (shape[None, :] * (1 + tilt * (bp_rp[:, None] - 1.7))
                        + 0.002 * rng.normal(size=(n, 55)))
        xp[f"{band}_coefficients"] = coeff.astype(np.float64)
        xp[f"{band}_coefficient_errors"] = (flux * 0.001 * (1 + idx / 30.0)).astype(np.float32)
        xp[f"{band}_n_relevant_bases"] = rng.integers(40, 56, n).astype(np.int16)
        xp[f"{band}_n_parameters"] = np.full(n, 55, np.int16)
        xp[f"{band}_standard_deviation"] = rng.uniform(0.9, 1.4, n).astype(np.float32)

    parallax_table = {"source_id": source_id, "zero_point": zero_point,
                      "parallax_corrected": parallax - zero_point}
    ebv = rng.uniform(0.05, 0.6, n)
    extinction = {"source_id": source_id, "ln_ebv_median": np.log(ebv),
                  "ln_ebv_mad_std": rng.uniform(0.02, 0.2, n),
                  "n_valid_samples": np.full(n, 1000, np.int32)}

    # truth: one row per allStar row, so a repeated source_id (a second spectrum, listed after
    # the first) and unmatched rows with source_id 0, as mock/truth.h5 has
    rep = np.arange(min(3, n))
    truth_ids = np.concatenate([source_id, source_id[rep], np.zeros(2, np.int64)])
    m = len(truth_ids)
    base = np.concatenate([np.arange(n), rep, [0, 0]])
    truth = {"source_id": truth_ids,
             "apogee_id": np.concatenate([apogee_id, apogee_id[rep], ["", ""]]),
             "mass": mass[base] * 1.01, "age_gyr": age[base] * 0.98, "m_h": m_h[base] - 0.01,
             "teff": teff[base] + 10.0, "logg": logg[base], "distance_kpc": 1.0 / parallax[base],
             "ebv": ebv[base], "row": np.arange(m, dtype=np.int64)}
    for col in ("mass", "age_gyr"):  # the repeats and the unmatched rows hold other values
        truth[col][n:] = -1.0

    tables = {"labels": labels, "gaia_source": gaia_source, "xp": xp,
              "parallax": parallax_table, "extinction": extinction}
    for name in ("gaia_source", "xp", "parallax", "extinction"):
        tables[name] = drop_rows(tables[name], np.zeros(n, bool), shuffle_seed=seed + 1)
    tables["truth"] = truth
    return tables


def drop_rows(table: dict[str, np.ndarray], drop, shuffle_seed: int | None = None):
    """A copy of ``table`` without the rows where ``drop`` (bool mask or indices) is set,
    optionally in a shuffled row order."""
    n = len(table["source_id"])
    mask = np.zeros(n, bool)
    mask[np.asarray(drop)] = True
    keep = np.flatnonzero(~mask)
    if shuffle_seed is not None:
        keep = np.random.default_rng(shuffle_seed).permutation(keep)
    return {k: np.asarray(v)[keep].copy() for k, v in table.items()}


def row(table: dict[str, np.ndarray], source_id: int) -> int:
    """Row index of ``source_id`` in a (possibly shuffled) table."""
    hits = np.flatnonzero(table["source_id"] == source_id)
    assert len(hits) >= 1, f"source_id {source_id} not in table"
    return int(hits[0])


def write_inputs(directory, tables=None, n: int = 40, seed: int = 0) -> dict[str, Path]:
    """Write the tables (default :func:`synthetic_tables`) as HDF5; name -> path.

    Names match :func:`starfm.assemble.assemble`'s keyword arguments; ``truth`` only if given.
    """
    directory = Path(directory)
    tables = synthetic_tables(n, seed) if tables is None else tables
    paths = {}
    for name in TABLE_NAMES:
        if name not in tables:
            continue
        paths[name] = directory / f"{name}.h5"
        attrs = {"extinction_law": "F99 R_V=3.1"} if name == "truth" else None
        write_table(paths[name], tables[name], attrs=attrs)
    return paths


def make_dataset(directory, n: int = 60, seed: int = 0, test_fraction: float = 0.1,
                 split_seed: int = 7, cuts=None) -> Path:
    """A small valid ``dataset.h5`` (assembled from :func:`synthetic_tables`) in ``directory``."""
    from starfm.assemble import assemble

    directory = Path(directory)
    paths = write_inputs(directory, synthetic_tables(n, seed))
    out = directory / "dataset.h5"
    assemble(**paths, cuts=copy.deepcopy(cuts or DEFAULT_CUTS), test_fraction=test_fraction,
             split_seed=split_seed, out=out)
    return out
