"""Assembly: apply the cuts, build the 121-token table and the train/test split, write dataset.h5.

This is the only stage that reads the cuts (SPEC §1.6), so changing a cut reruns only this and
what follows. Inputs are the label table (the key: one row per Gaia ``source_id``) and four Gaia /
dust tables joined to it on ``source_id`` (``docs/data_products.md``); a star absent from one of
them simply has that table's tokens absent (NaN).

Sample (rows of ``dataset.h5``): stars with finite mass and age and ``mass``, ``age_gyr`` inside
their open cut ranges, and ``m_h`` inside its open range *where [M/H] is finite*. A NaN [M/H] (the
label stage blanks flagged ASPCAP labels) keeps the star with its [M/H] token absent: the paper's
sample is defined by valid mass and age (Zhang+2026 §2.1, "treating flagged parameters as missing
data (NaN) rather than discarding the stars entirely"; 26 % of its training stars lack APOGEE
parameters), so the [M/H] cut only removes stars whose measured [M/H] lies outside the range.

Tokens are built by the public tokeniser :func:`starfm.tokenise.tokenise` (which ``starfm predict``
calls too), summarised here (order ``starfm.tokens.VOCABULARY``; values and errors float32,
physical units; an absent value is NaN and its error 0; a missing error of a present value is 0):

* ``bp0..54``, ``rp0..54``: XP coefficients / F_G with 2.5 log10 F_G = 25.6873668671 - G
  (Leung & Bovy 2024 eq. 8), errors likewise. Coefficient ``i`` is relevant iff
  ``i < n_relevant_bases``, except 52-54, which copy the relevancy of 51 (Gaia never marks the last
  ones relevant). Errors are the archive's ``*_coefficient_errors`` (not rescaled by
  ``*_standard_deviation``). Valid only where ``g_mag[0] < G < g_mag[1]``, ``bp_rp[0] < BP-RP < bp_rp[1]`` and
  ``phot_bp_rp_excess_factor < excess_factor_max``; elsewhere (or without a spectrum) all NaN.
* ``bp_rp``: Gaia ``bp_rp``, under the *same* photometric XP cuts (G, BP-RP range, excess factor),
  because those cuts flag erroneous BP/RP fluxes and BP-RP is made from those fluxes; it does not
  need an XP spectrum. Its error is 0 (gaia_source as fetched carries no BP/RP flux errors).
* ``j_h``, ``j_k``: 2MASS colours from the labels, errors in quadrature (a missing component
  error counts as 0).
* ``teff``, ``logg``, ``m_h`` (+ errors) from the labels.
* ``ln_ebv`` = ``ln_ebv_median`` (error ``ln_ebv_mad_std``) from the dust stage.
* ``pseudo_luminosity`` L = parallax_corrected[mas] * 10**(G/5), error parallax_error * 10**(G/5)
  (= |sigma_parallax/parallax| * |L|, also defined at zero parallax); valid only where
  ``ruwe < ruwe_max`` and ``parallax_error < parallax_error_max`` [mas].
* ``mass`` [Msun] (+ error); ``ln_age`` = ln(age / Gyr), error age_err / age.

Split: ``is_test`` = u(seed, source_id) < test_fraction with u a SplitMix64 hash of the pair
mapped to [0, 1). Standardisation attributes (nanmedian, astropy ``mad_std``) use train rows only;
a token with no train value gets median 0 and mad_std 1 (and one with zero spread mad_std 1), so a
model can always divide by it. Counts of every cut (as L&B24 Table 1) are logged and stored.
"""
from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field

import h5py
import numpy as np
from astropy.stats import mad_std
from tqdm import tqdm

from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.errors import StarfmInputError, require_rows
from starfm.tables import column_names, match_rows, read_attrs, read_table, write_table
from starfm.settings import add_settings_argument, parse_settings
from starfm.tokenise import (LABEL_CUTS, CutSettings, astrometric_checks, photometric_checks,
                             tokenise)
from starfm.tokenise import has_xp as has_xp_band
from starfm.tokens import N_XP, TOKEN_INDEX, VOCABULARY

log = logging.getLogger("starfm.assemble")


LABEL_COLUMNS = ["source_id", "apogee_id", "glon", "glat", "j", "j_err", "h", "h_err", "k", "k_err",
                 "teff", "teff_err", "logg", "logg_err", "m_h", "m_h_err", "alpha_m", "alpha_m_err",
                 "mass", "mass_err",
                 "age_gyr", "age_gyr_err"]
# label columns a labels table may lack (all NaN then, logged): [alpha/M] came after the others,
# and a table written before it still assembles, without the alpha_m token
OPTIONAL_LABEL_COLUMNS = ("alpha_m", "alpha_m_err")
GAIA_COLUMNS = ["source_id", "parallax", "parallax_error", "phot_g_mean_mag", "bp_rp",
                "phot_bp_rp_excess_factor", "ruwe"]
PARALLAX_COLUMNS = ["source_id", "zero_point", "parallax_corrected"]
EXTINCTION_COLUMNS = ["source_id", "ln_ebv_median", "ln_ebv_mad_std"]
XP_ID_COLUMNS = ["source_id", "bp_n_relevant_bases", "rp_n_relevant_bases"]
XP_ARRAY_COLUMNS = ["bp_coefficients", "bp_coefficient_errors", "rp_coefficients",
                    "rp_coefficient_errors"]
# value columns that must not be entirely NaN (a broken upstream stage); error columns may be
NOT_ALL_NAN = {
    "labels": ["mass", "age_gyr"],
    "gaia_source": ["parallax", "parallax_error", "phot_g_mean_mag", "bp_rp",
                    "phot_bp_rp_excess_factor", "ruwe"],
    "parallax": ["parallax_corrected"],
    "extinction": ["ln_ebv_median"],
}
XP_CHUNK_ROWS = 65536  # XP rows read per HDF5 slice: bounds memory (~30 MB per 2-D column)


# ---- settings ------------------------------------------------------------------------------
# CutSettings (config.yaml ``cuts:``) is the tokeniser's: one cut object from the schema to
# ``starfm.tokenise`` (re-exported here as the assemble stage's settings section).


@dataclass(frozen=True)
class SplitSettings:
    """config.yaml ``split:``."""

    SECTION = "split"
    test_fraction: float = 0.1
    seed: int = 7


@dataclass(frozen=True)
class AssembleSettings:
    """The assemble stage's settings: config.yaml ``cuts:`` and ``split:``."""

    cuts: CutSettings = field(default_factory=CutSettings)
    split: SplitSettings = field(default_factory=SplitSettings)


# ---- reading and joining -------------------------------------------------------------------
def _read_checked(path, columns, name, not_all_nan=None) -> dict[str, np.ndarray]:
    table = read_table(path, columns)
    n = len(table[columns[0]])
    require_rows(n, f"{path} ({name})")
    for col in (NOT_ALL_NAN.get(name, []) if not_all_nan is None else not_all_nan):
        if not np.isfinite(np.asarray(table[col], dtype=float)).any():
            raise StarfmInputError(f"{path}: column '{col}' is entirely NaN ({n} rows)")
    table["source_id"] = np.asarray(table["source_id"]).astype(np.int64)
    return table


def _take(column: np.ndarray, rows: np.ndarray, fill=np.nan) -> np.ndarray:
    """``column[rows]`` with ``fill`` where ``rows`` is -1 (floats as float64)."""
    column = np.asarray(column)
    dtype = np.float64 if column.dtype.kind == "f" or isinstance(fill, float) else column.dtype
    out = np.full((len(rows),) + column.shape[1:], fill, dtype=dtype)
    ok = rows >= 0
    out[ok] = column[rows[ok]]
    return out


# ---- the split -----------------------------------------------------------------------------
def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele+2014) on a uint64 array; wraps modulo 2**64 by design."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _split_uniform(source_id: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per (seed, source_id): the same star gets the same number whatever
    other rows are present, so a rerun after a cut change keeps every test star in test (and
    every train star in train) -- a permutation of the current rows would reshuffle them all and
    leak former test stars into training."""
    ids = np.asarray(source_id, dtype=np.int64).astype(np.uint64)
    seed_hash = _splitmix64(np.full(1, seed, dtype=np.uint64))
    h = _splitmix64(ids ^ seed_hash)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


# ---- tokens (the definitions live in starfm.tokenise) --------------------------------------
def _fill_xp(values, errors, xp_path, columns, xp_rows, stars, cuts):
    """Overwrite the tokens of ``stars`` (XP rows ``xp_rows``) with their tokens including XP.

    ``columns``: the tokeniser's per-star columns (all stars). Reads the 2-D coefficient columns
    in contiguous row slices (bounded memory at 650k stars) and tokenises each slice's stars.
    """
    order = np.argsort(xp_rows, kind="stable")
    xp_rows, stars = xp_rows[order], stars[order]
    with h5py.File(xp_path, "r") as f:
        n_xp = len(f["bp_coefficients"])
        starts = range(0, n_xp, XP_CHUNK_ROWS)
        for start in tqdm(starts, desc="XP tokens", unit="chunk", file=sys.stderr,
                          disable=len(starts) < 4):
            stop = min(start + XP_CHUNK_ROWS, n_xp)
            lo, hi = np.searchsorted(xp_rows, [start, stop], side="left")
            if lo == hi:
                continue
            rows, who = xp_rows[lo:hi], stars[lo:hi]
            chunk = {k: v[who] for k, v in columns.items()}
            for c in XP_ARRAY_COLUMNS:
                chunk[c] = f[c][start:stop][rows - start]
            values[who], errors[who] = tokenise(chunk, cuts)


def _check_xp_file(path, n_rows):
    with h5py.File(path, "r") as f:
        names = [k for k in f.keys() if isinstance(f[k], h5py.Dataset)]
        missing = [c for c in XP_ARRAY_COLUMNS if c not in names]
        if missing:
            raise StarfmInputError(f"{path}: missing column(s) {missing}; it has {sorted(names)}")
        for c in XP_ARRAY_COLUMNS:
            if f[c].shape != (n_rows, N_XP):
                raise StarfmInputError(f"{path}: column '{c}' has shape {f[c].shape}, "
                                       f"expected ({n_rows}, {N_XP})")


def _standardisation(values: np.ndarray, train: np.ndarray):
    """Per-token nanmedian and mad_std over the train rows (0 and 1 where a token has no spread)."""
    median = np.zeros(len(VOCABULARY))
    scale = np.ones(len(VOCABULARY))
    rows = np.flatnonzero(train)
    for k, name in enumerate(VOCABULARY):  # a loop over 121 tokens, each vectorised over stars
        col = values[rows, k].astype(np.float64)
        col = col[np.isfinite(col)]
        if len(col) == 0:
            log.warning("token %s has no value in the train split: median 0, mad_std 1", name)
            continue
        median[k] = np.median(col)
        s = float(mad_std(col, ignore_nan=True))
        if np.isfinite(s) and s > 0:
            scale[k] = s
        else:
            log.warning("token %s has mad_std %s on train: mad_std set to 1", name, s)
    return median, scale


# ---- the stage -----------------------------------------------------------------------------
DEFAULT_REQUIRE = ("mass", "age_gyr")


def assemble(labels, gaia_source, xp, parallax, extinction, cuts, test_fraction: float,
             split_seed: int, out, truth=None, require_labels=DEFAULT_REQUIRE) -> dict:
    """Build ``out`` (dataset.h5) from the five input tables (+ optional truth); return counts.

    ``cuts``: :class:`~starfm.tokenise.CutSettings` (or a dict / JSON of its keys, missing ones
    take their defaults); stored as the attribute ``cuts``. ``require_labels``: the label
    columns a star must have to be in the sample (default mass and age, the paper's sample;
    library mode: teff and logg, as it has no mass and ages for a subset). The mass and age range
    cuts then apply only where the label is finite, like the [M/H] cut. Raises
    :class:`StarfmInputError` on bad input; ``out`` is written atomically and only at the end.
    """
    cuts = CutSettings.parse(cuts)
    test_fraction = float(test_fraction)
    if not 0.0 < test_fraction < 1.0:
        raise StarfmInputError(f"split.test_fraction must be in (0, 1), got {test_fraction}")
    if int(split_seed) != split_seed or split_seed < 0:
        raise StarfmInputError(f"split.seed must be a non-negative integer, got {split_seed}")
    split_seed = int(split_seed)

    # -- the sample: label cuts --
    require = tuple(require_labels)
    unknown = sorted(set(require) - set(LABEL_COLUMNS[2:]))
    if not require or unknown:
        raise StarfmInputError(f"--require-labels: {list(require)} must name label columns "
                               f"(unknown: {unknown})")
    default_sample = require == DEFAULT_REQUIRE
    have = set(column_names(labels))
    absent = [c for c in OPTIONAL_LABEL_COLUMNS if c not in have]
    if set(absent) & set(require):
        raise StarfmInputError(f"{labels}: --require-labels names {sorted(set(absent) & set(require))}, "
                               "a column this labels table does not have")
    lab = _read_checked(labels, [c for c in LABEL_COLUMNS if c not in absent], "labels",
                        None if default_sample else list(require))
    for c in absent:
        log.info("%s: no column '%s': that label is absent for every star", labels, c)
        lab[c] = np.full(len(lab["source_id"]), np.nan)
    sid = lab["source_id"]
    if (sid == 0).any():
        raise StarfmInputError(f"{labels}: {int((sid == 0).sum())} rows with source_id 0 "
                               "(the label table must hold one row per nonzero source_id)")
    if len(np.unique(sid)) != len(sid):
        raise StarfmInputError(f"{labels}: source_id is not unique "
                               f"({len(sid) - len(np.unique(sid))} repeats); no star may be in "
                               "both train and test")
    age = np.asarray(lab["age_gyr"], dtype=float)
    if np.nanmedian(age) > 1000:  # DistMass ages in years would give a median of ~5e9
        raise StarfmInputError(f"{labels}: column 'age_gyr' has median {np.nanmedian(age):.3g}: "
                               "looks like years, expected Gyr (check distmass_age_unit)")
    mass = np.asarray(lab["mass"], dtype=float)
    if default_sample:
        steps = [("finite mass and age", np.isfinite(mass) & np.isfinite(age)),
                 *cuts.label_checks(lab)]
    else:
        finite = np.ones(len(sid), dtype=bool)
        for c in require:
            finite &= np.isfinite(np.asarray(lab[c], dtype=float))
        steps = [(f"finite {' and '.join(require)}", finite)]
        # a required cut on a label not in require_labels applies only where the label is finite
        for key, (name, ok) in zip(LABEL_CUTS, cuts.label_checks(lab)):
            if LABEL_CUTS[key][2] and key not in require:
                x = np.asarray(lab[key], dtype=float)
                name, ok = f"{name} where finite", ok | ~np.isfinite(x)
            steps.append((name, ok))
    keep = np.ones(len(sid), dtype=bool)
    cut_counts = [{"cut": "label table", "removed": 0, "remaining": len(sid)}]
    log.info("%-45s %9d stars", "label table", len(sid))
    for name, ok in steps:
        removed = int((keep & ~ok).sum())
        keep &= ok
        remaining = int(keep.sum())
        cut_counts.append({"cut": name, "removed": removed, "remaining": remaining})
        log.info("%-45s %9d removed, %9d left", name, removed, remaining)
        if remaining == 0:
            raise StarfmInputError(f"{labels}: the cut '{name}' removed every remaining star "
                                   f"({removed}); the sample is empty")
    lab = {k: np.asarray(v)[keep] for k, v in lab.items()}
    sid = lab["source_id"]
    n = len(sid)

    # -- join the Gaia and dust tables --
    # a source without astrometry (library mode) has parallax, its error and RUWE all NaN
    gaia = _read_checked(gaia_source, GAIA_COLUMNS, "gaia_source",
                         None if default_sample else ["phot_g_mean_mag", "bp_rp"])
    plx = _read_checked(parallax, PARALLAX_COLUMNS, "parallax", None if default_sample else [])
    ext = _read_checked(extinction, EXTINCTION_COLUMNS, "extinction")
    xpt = _read_checked(xp, XP_ID_COLUMNS, "xp")
    _check_xp_file(xp, len(xpt["source_id"]))
    g_rows = match_rows(gaia["source_id"], sid, str(gaia_source))
    p_rows = match_rows(plx["source_id"], sid, str(parallax))
    e_rows = match_rows(ext["source_id"], sid, str(extinction))
    x_rows = match_rows(xpt["source_id"], sid, str(xp))
    g = {c: _take(gaia[c], g_rows) for c in GAIA_COLUMNS[1:]}
    p = {c: _take(plx[c], p_rows) for c in PARALLAX_COLUMNS[1:]}
    e = {c: _take(ext[c], e_rows) for c in EXTINCTION_COLUMNS[1:]}
    n_rel = {b: _take(xpt[f"{b}_n_relevant_bases"], x_rows, fill=0).astype(np.int16)
             for b in ("bp", "rp")}
    G = g["phot_g_mean_mag"]

    # -- the tokeniser's columns (starfm.tokenise), one row per sample star --
    f = {c: np.asarray(lab[c], dtype=np.float64) for c in LABEL_COLUMNS[2:]}
    columns = {"phot_g_mean_mag": G, "bp_rp": g["bp_rp"],
               "phot_bp_rp_excess_factor": g["phot_bp_rp_excess_factor"],
               "parallax_corrected": p["parallax_corrected"],
               "parallax_error": g["parallax_error"], "ruwe": g["ruwe"],
               "bp_n_relevant_bases": n_rel["bp"], "rp_n_relevant_bases": n_rel["rp"],
               **{c: f[c] for c in LABEL_COLUMNS[4:]},
               "ln_ebv": e["ln_ebv_median"], "ln_ebv_err": e["ln_ebv_mad_std"]}

    # -- validity masks, counted step by step (first failing reason) --
    has_xp = (x_rows >= 0) & has_xp_band(columns)  # a row with a band
    phot_ok = np.ones(n, dtype=bool)
    xp_counts = {"no XP spectrum": int((~has_xp).sum())}
    for name, ok in photometric_checks(columns, cuts):
        xp_counts[f"{name} (XP + BP-RP blanked)"] = int((phot_ok & ~ok).sum())
        xp_counts[f"{name} (spectra blanked)"] = int((phot_ok & has_xp & ~ok).sum())
        phot_ok &= ok
    xp_ok = phot_ok & has_xp
    xp_counts["valid XP spectrum"] = int(xp_ok.sum())
    plx_ok = np.ones(n, dtype=bool)
    plx_counts = {}
    for name, ok in astrometric_checks(columns, cuts):
        plx_counts[name] = int((plx_ok & ~ok).sum())
        plx_ok &= ok
    plx_counts["no corrected parallax or G"] = int((plx_ok & ~(np.isfinite(p["parallax_corrected"])
                                                               & np.isfinite(G))).sum())
    for name, count in {**{f"XP cut: {k}": v for k, v in xp_counts.items()},
                        **{f"parallax cut: {k}": v for k, v in plx_counts.items()}}.items():
        log.info("%-45s %9d stars", name, count)

    # -- the token table: every star, then the stars with a valid spectrum again with their XP --
    values, errors = tokenise(columns, cuts)
    stars = np.flatnonzero(xp_ok)
    _fill_xp(values, errors, xp, columns, x_rows[stars], stars, cuts)

    # -- split and standardisation --
    is_test = _split_uniform(sid, split_seed) < test_fraction
    n_test = int(is_test.sum())
    if n_test == n:
        raise StarfmInputError(f"all {n} stars fell in the test split (test fraction "
                               f"{test_fraction}); the train split is empty")
    if n_test == 0:
        log.warning("the test split is empty (%d stars, test fraction %s)", n, test_fraction)
    median, scale = _standardisation(values, ~is_test)

    # -- meta, truth, counts --
    meta = {"apogee_id": lab["apogee_id"], "glon": f["glon"], "glat": f["glat"],
            "phot_g_mean_mag": G, "bp_rp": g["bp_rp"],
            "phot_bp_rp_excess_factor": g["phot_bp_rp_excess_factor"],
            "parallax": g["parallax"], "parallax_error": g["parallax_error"], "ruwe": g["ruwe"],
            "zero_point": p["zero_point"], "parallax_corrected": p["parallax_corrected"],
            "ln_ebv_median": e["ln_ebv_median"], "ln_ebv_mad_std": e["ln_ebv_mad_std"],
            "ebv_median": np.exp(e["ln_ebv_median"]),
            "bp_n_relevant_bases": n_rel["bp"], "rp_n_relevant_bases": n_rel["rp"],
            "in_gaia_source": g_rows >= 0, "has_xp_spectrum": has_xp, "xp_valid": xp_ok,
            "parallax_valid": plx_ok}
    groups = {"meta": meta}
    attrs_extra = {}
    if truth is not None:
        groups["truth"], attrs_extra["truth_attrs"] = _truth(truth, sid)

    present = np.isfinite(values)
    has_params = present[:, [TOKEN_INDEX[t] for t in ("teff", "logg", "m_h")]].all(axis=1)
    has_colours = present[:, TOKEN_INDEX["j_h"]] & present[:, TOKEN_INDEX["j_k"]]
    table1 = {"stars": n, "with XP spectra": int(xp_ok.sum()),
              "with APOGEE teff": int(present[:, TOKEN_INDEX["teff"]].sum()),
              "with APOGEE teff, logg and [M/H]": int(has_params.sum()),
              "with XP spectra without APOGEE parameters": int((xp_ok & ~has_params).sum()),
              "with APOGEE parameters without XP spectra": int((has_params & ~xp_ok).sum()),
              "without pseudo-luminosity": int((~present[:, TOKEN_INDEX["pseudo_luminosity"]]).sum()),
              "without E(B-V)": int((~present[:, TOKEN_INDEX["ln_ebv"]]).sum()),
              "without 2MASS colours": int((~has_colours).sum())}
    for name, count in table1.items():
        log.info("%-45s %9d", name, count)
    log.info("split: %d train, %d test (fraction %.4f, seed %d)", n - n_test, n_test,
             n_test / n, split_seed)

    attrs = {"vocabulary": list(VOCABULARY), "token_median": median.astype(np.float64),
             "token_mad_std": scale.astype(np.float64), "cuts": cuts.to_json(),
             "n_train": n - n_test, "n_test": n_test, "test_fraction": test_fraction,
             "split_seed": split_seed, "cut_counts": cut_counts, "xp_cut_counts": xp_counts,
             "parallax_cut_counts": plx_counts, "sample_counts": table1,
             "age_unit": "ln_age = ln(age / Gyr)", **attrs_extra}
    if not default_sample:  # only then: the default run's dataset.h5 keeps its bytes
        attrs["require_labels"] = json.dumps(list(require))
    write_table(out, {"source_id": sid, "values": values, "errors": errors, "is_test": is_test},
                attrs=attrs, groups=groups)
    log.info("wrote %s (%d stars x %d tokens)", out, n, len(VOCABULARY))
    return {"n": n, "n_train": n - n_test, "n_test": n_test, "cut_counts": cut_counts,
            "xp_cut_counts": xp_counts, "parallax_cut_counts": plx_counts, "sample_counts": table1}


def _truth(path, sid):
    """Truth columns matched to ``sid`` (first row of a repeated source_id), aligned with the
    dataset rows (``source_id`` = the dataset's); NaN / 0 / "" where unmatched, plus ``has_truth``.
    Returns (columns, the truth file's root attributes)."""
    table = read_table(path)
    if "source_id" not in table:
        raise StarfmInputError(f"{path}: missing column(s) ['source_id']; "
                               f"it has {sorted(table)}")
    require_rows(len(table["source_id"]), str(path))
    rows = match_rows(np.asarray(table["source_id"]).astype(np.int64), sid)
    out = {"source_id": sid, "has_truth": rows >= 0}
    fills = {"f": np.nan, "U": "", "S": b""}
    for name, col in table.items():
        if name == "source_id" or col.dtype.kind not in "biufUS":
            continue
        out[name] = _take(col, rows, fill=fills.get(col.dtype.kind, 0))
    if not out["has_truth"].any():
        log.warning("%s: no sample star has a truth row", path)
    attrs = {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in read_attrs(path).items()}
    return out, attrs


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser(
        "assemble",
        "Apply the cuts (the only stage that reads them), build the 121-token table "
        "(values and errors, float32, order starfm.tokens.VOCABULARY) and a seeded train/test "
        "split by source_id, and write dataset.h5 with meta/truth groups and the train-split "
        "standardisation as attributes.")
    parser.add_argument("--labels", required=True, help="label table (catalogue/labels.h5)")
    parser.add_argument("--gaia-source", required=True, help="gaia/gaia_source.h5")
    parser.add_argument("--xp", required=True, help="XP continuous coefficients (gaia/xp_continuous.h5)")
    parser.add_argument("--parallax", required=True, help="zero-point corrected parallaxes (gaia/parallax.h5)")
    parser.add_argument("--extinction", required=True, help="ln E(B-V) per star (dust/extinction.h5)")
    parser.add_argument("--truth", default=None,
                        help="optional known truth per star (e.g. mock/truth.h5), matched by source_id")
    parser.add_argument("--require-labels", default=",".join(DEFAULT_REQUIRE),
                        help="comma-separated label columns every sample star must have "
                             "(library mode: teff,logg)")
    parser.add_argument("--out", required=True, help="output dataset.h5")
    add_settings_argument(parser, AssembleSettings)
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    s = parse_settings(AssembleSettings, args.settings)
    assemble(args.labels, args.gaia_source, args.xp, args.parallax, args.extinction,
             s.cuts, s.split.test_fraction, s.split.seed, args.out, truth=args.truth,
             require_labels=tuple(c for c in args.require_labels.split(",") if c))
    return 0
