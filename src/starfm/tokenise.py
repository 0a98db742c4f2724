"""The one tokeniser: Gaia XP + gaia_source + 2MASS (+ labels, ln E(B-V)) -> the 121 tokens.

Training (``assemble``) and inference (``predict``, ``inpaint``) both call :func:`tokenise`, so
a token is defined in exactly one place. It works on plain column dicts of equal-length arrays
(one row per star), is vectorised and row-independent: tokenising a table in chunks gives the
same bytes as tokenising it whole.

Columns (any may be absent: an absent column is all NaN, i.e. its tokens are absent):

==========================================  ==========================================================
``bp_coefficients``, ``rp_coefficients``     (n, 55) XP coefficients [e-/s]
``bp_coefficient_errors`` (and ``rp_``)      (n, 55) their errors (not rescaled by standard_deviation)
``bp_n_relevant_bases`` (and ``rp_``)        int; 0 = no such band
``phot_g_mean_mag``                          G [mag]: normalises XP and pseudo-luminosity
``bp_rp``, ``phot_bp_rp_excess_factor``      Gaia BP-RP [mag] and the excess factor
``parallax_corrected``, ``parallax_error``    zero-point corrected parallax and its error [mas]
``ruwe``                                     renormalised unit weight error
``j``, ``j_err``, ``h``, ``h_err``, ``k``,   2MASS magnitudes and errors
``k_err``
``teff``, ``logg``, ``m_h`` (+ ``_err``)     labels (APOGEE)
``mass``, ``mass_err``, ``age_gyr``,         labels (DistMass), age in Gyr
``age_gyr_err``
``ln_ebv``, ``ln_ebv_err``                   ln E(B-V) and its error
==========================================  ==========================================================

Tokens (order ``starfm.tokens.VOCABULARY``; float32, physical units; an absent value is NaN with
error 0; a missing error of a present value is 0):

* ``bp0..54``, ``rp0..54``: coefficient / F_G with 2.5 log10 F_G = 25.6873668671 - G (Leung &
  Bovy 2024 eq. 8), errors |error| / F_G. Coefficient ``i`` is relevant iff
  ``i < n_relevant_bases``, except 52-54, which copy the relevancy of 51 (Gaia never marks the last
  ones relevant). Valid only where the photometric checks pass (:func:`photometric_checks`:
  ``g_mag[0] < G < g_mag[1]``, ``bp_rp[0] < BP-RP < bp_rp[1]``, excess factor
  ``< excess_factor_max``); elsewhere (or without a spectrum) all absent.
* ``bp_rp``: Gaia BP-RP under the same photometric checks (they flag erroneous BP/RP fluxes and
  BP-RP is made from those fluxes); no spectrum needed. Error 0.
* ``j_h``, ``j_k``: 2MASS colours, errors in quadrature (a missing component error counts as 0).
* ``teff``, ``logg``, ``m_h``, ``mass`` (+ errors); ``ln_age`` = ln(age / Gyr), error age_err / age.
* ``ln_ebv`` (error ``ln_ebv_err``).
* ``pseudo_luminosity`` L = parallax_corrected [mas] * 10**(G/5), error parallax_error * 10**(G/5);
  valid only where the astrometric checks pass (:func:`astrometric_checks`: ``ruwe < ruwe_max``,
  ``parallax_error < parallax_error_max``).

A NaN in a quality column (BP-RP in its range check, the excess factor, RUWE) fails its check
(``missing_quality="fail"``, what assembly does: a star without gaia_source has no tokens from
it); ``"pass"`` skips the check for that star instead (prediction on XP without gaia_source; the
caller flags it). G and the parallax error are never optional: without them the token is absent.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Mapping

import numpy as np

from starfm.errors import StarfmInputError
from starfm import tokens
from starfm.tokens import N_XP, TOKEN_INDEX, VOCABULARY

# coefficient indices 52-54 copy the relevancy of 51 in each band (L&B24 §4.2; Zhang+26 §2.3)
LAST_FLAGGED_INDEX = 51
BANDS = ("bp", "rp")

# every column tokenise() reads (see the module docstring)
XP_INPUT_COLUMNS = tuple(f"{b}_{f}" for b in BANDS
                         for f in ("coefficients", "coefficient_errors", "n_relevant_bases"))
SCALAR_INPUT_COLUMNS = ("phot_g_mean_mag", "bp_rp", "phot_bp_rp_excess_factor",
                        "parallax_corrected", "parallax_error", "ruwe",
                        "j", "j_err", "h", "h_err", "k", "k_err",
                        "teff", "teff_err", "logg", "logg_err", "m_h", "m_h_err", "alpha_m", "alpha_m_err",
                        "mass", "mass_err", "age_gyr", "age_gyr_err", "ln_ebv", "ln_ebv_err")
INPUT_COLUMNS = XP_INPUT_COLUMNS + SCALAR_INPUT_COLUMNS


# a label cut: its field name is the label column; (name in the cut counts, unit, required: a
# star without the label fails it, else a missing label passes and only a measured one outside
# the range removes the star). Adding a cut: one CutSettings field (+ its schema entry and
# config.yaml line) and, for a label cut, one line here.
LABEL_CUTS = {"mass": ("mass", "Msun", True), "age_gyr": ("age", "Gyr", True),
              "m_h": ("[M/H]", "", False)}


@dataclass(frozen=True)
class CutSettings:
    """config.yaml ``cuts:``, the one cut object from the schema to the tokeniser (and stored in
    ``dataset.h5`` and ``model.pt``, so ``predict`` uses the cuts its model was trained with).

    Ranges are open intervals; defaults = the schema's (tests/test_settings.py). The label cuts
    (:data:`LABEL_CUTS`) define the sample at assembly; the others are the photometric and
    astrometric validity cuts of the tokens.
    """

    SECTION = "cuts"
    mass: tuple[float, float] = (0.5, 4.0)          # [Msun]
    age_gyr: tuple[float, float] = (0.0, 14.0)      # [Gyr]
    m_h: tuple[float, float] = (-2.5, 0.7)          # [dex], where [M/H] is finite
    g_mag: tuple[float, float] = (6.0, 17.5)        # XP and BP-RP valid only inside
    bp_rp: tuple[float, float] = (0.0, 4.0)         # ... and inside this
    excess_factor_max: float = 2.0                  # ... and below this excess factor
    ruwe_max: float = 1.4                           # parallax valid only below this ruwe
    parallax_error_max: float = 0.1                 # ... and this error [mas]

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(f.default, tuple):
                try:
                    lo, hi = (float(v) for v in value)
                except (TypeError, ValueError):
                    raise StarfmInputError(f"cuts: '{f.name}' must be [min, max], got {value!r}") from None
                if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                    raise StarfmInputError(f"cuts: '{f.name}' needs finite min < max, got [{lo}, {hi}]")
                object.__setattr__(self, f.name, (lo, hi))
            else:
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise StarfmInputError(f"cuts: '{f.name}' must be a number, got {value!r}") from None
                if not (math.isfinite(value) and value > 0):
                    raise StarfmInputError(f"cuts: '{f.name}' must be finite and > 0, got {value}")
                object.__setattr__(self, f.name, value)

    @classmethod
    def parse(cls, cuts) -> "CutSettings":
        """From a CutSettings, a dict or its JSON (missing keys take their defaults)."""
        if isinstance(cuts, cls):
            return cuts
        from starfm.settings import parse_settings
        return parse_settings(cls, cuts, "cuts")

    def to_json(self) -> str:
        """The JSON stored in ``dataset.h5`` (attribute ``cuts``) and ``model.pt``."""
        return json.dumps(asdict(self), sort_keys=True)

    def narrowed(self, other: Mapping) -> tuple["CutSettings", list[str]]:
        """These cuts narrowed by ``other`` (some of the keys): each range the intersection, each
        maximum the smaller; returns the cuts and the keys of ``other`` that would have widened
        one of these (ignored: a model predicts only inside the cuts it was trained with)."""
        out, wider = {}, []
        for key, value in dict(other).items():
            mine = getattr(self, key) if key in {f.name for f in fields(self)} else None
            if mine is None:
                raise StarfmInputError(f"cuts: unknown key '{key}'; known: "
                                       f"{sorted(f.name for f in fields(self))}")
            given = CutSettings.parse({key: value})
            theirs = getattr(given, key)
            if isinstance(mine, tuple):
                out[key] = (max(mine[0], theirs[0]), min(mine[1], theirs[1]))
                if theirs[0] < mine[0] or theirs[1] > mine[1]:
                    wider.append(key)
            else:
                out[key] = min(mine, theirs)
                if theirs > mine:
                    wider.append(key)
        return replace(self, **out), wider

    def label_checks(self, labels: Mapping) -> list[tuple[str, np.ndarray]]:
        """[(name, passes)] of the label cuts on the label columns, in assembly's order."""
        out = []
        for key, (name, unit, required) in LABEL_CUTS.items():
            lo, hi = getattr(self, key)
            x = np.asarray(labels[key], dtype=float)
            ok = inside(x, (lo, hi))
            out.append((f"{name} in ({lo}, {hi}){' ' + unit if unit else ''}"
                        f"{'' if required else ' where finite'}",
                        ok if required else ok | ~np.isfinite(x)))
        return out


def inside(x: np.ndarray, bounds) -> np.ndarray:
    """Open interval test; NaN is outside."""
    return (x > bounds[0]) & (x < bounds[1])


def _column(columns: Mapping, name: str, n: int) -> np.ndarray:
    """A scalar column as float64 (all NaN when absent); a wrong length is an error."""
    if name not in columns or columns[name] is None:
        return np.full(n, np.nan)
    col = np.asarray(columns[name], dtype=np.float64)
    if col.shape != (n,):
        raise StarfmInputError(f"tokenise: column '{name}' has shape {col.shape}, expected ({n},)")
    return col


def n_rows(columns: Mapping) -> int:
    """The common row count of ``columns`` (error naming the columns if they disagree)."""
    lengths = {k: len(np.asarray(v)) for k, v in columns.items() if v is not None}
    if not lengths:
        raise StarfmInputError("tokenise: no columns given")
    if len(set(lengths.values())) > 1:
        raise StarfmInputError(f"tokenise: columns of unequal length {lengths}")
    return next(iter(lengths.values()))


def photometric_checks(columns: Mapping, cuts: CutSettings = CutSettings(),
                       missing_quality: str = "fail") -> list[tuple[str, np.ndarray]]:
    """[(name, passes)] of the XP / BP-RP cuts, in the order assembly counts them."""
    n = n_rows(columns)
    g, bp_rp = _column(columns, "phot_g_mean_mag", n), _column(columns, "bp_rp", n)
    excess = _column(columns, "phot_bp_rp_excess_factor", n)
    skip = _skip(missing_quality)
    return [("G", inside(g, cuts.g_mag)),
            ("BP-RP", inside(bp_rp, cuts.bp_rp) | (skip & np.isnan(bp_rp))),
            ("excess factor", (excess < cuts.excess_factor_max) | (skip & np.isnan(excess)))]


def astrometric_checks(columns: Mapping, cuts: CutSettings = CutSettings(),
                       missing_quality: str = "fail") -> list[tuple[str, np.ndarray]]:
    """[(name, passes)] of the pseudo-luminosity cuts, in the order assembly counts them."""
    n = n_rows(columns)
    ruwe = _column(columns, "ruwe", n)
    skip = _skip(missing_quality)
    return [("ruwe", (ruwe < cuts.ruwe_max) | (skip & np.isnan(ruwe))),
            ("parallax_error", _column(columns, "parallax_error", n) < cuts.parallax_error_max)]


def _skip(missing_quality: str) -> bool:
    if missing_quality not in ("fail", "pass"):
        raise ValueError(f"missing_quality must be 'fail' or 'pass', not {missing_quality!r}")
    return missing_quality == "pass"


def _all(checks) -> np.ndarray:
    ok = checks[0][1].copy()
    for _, passes in checks[1:]:
        ok &= passes
    return ok


def has_xp(columns: Mapping) -> np.ndarray:
    """Rows holding at least one XP band (``n_relevant_bases`` > 0 in BP or RP)."""
    n = n_rows(columns)
    out = np.zeros(n, bool)
    for band in BANDS:
        n_rel = columns.get(f"{band}_n_relevant_bases")
        if n_rel is not None:
            out |= np.asarray(n_rel) > 0
    return out


def relevant(n_relevant_bases: np.ndarray) -> np.ndarray:
    """(n, 55) bool: coefficient i relevant iff i < n_relevant_bases; 52-54 copy 51's flag."""
    n_rel = np.asarray(n_relevant_bases, dtype=np.int64)
    n_eff = np.where(n_rel > LAST_FLAGGED_INDEX, N_XP, n_rel)
    return np.arange(N_XP)[None, :] < n_eff[:, None]


def g_flux(g_mag: np.ndarray) -> np.ndarray:
    """F_G [e-/s, the XP coefficients' unit] of G in float64 (``starfm.tokens.g_flux``)."""
    return tokens.g_flux(np.asarray(g_mag, dtype=np.float64))


def validity(columns: Mapping, cuts: CutSettings = CutSettings(),
             missing_quality: str = "fail") -> dict[str, np.ndarray]:
    """Per-star masks: ``photometry`` (XP and BP-RP checks pass), ``xp`` (that and a spectrum),
    ``parallax`` (astrometric checks pass; the parallax itself may still be missing)."""
    phot_ok = _all(photometric_checks(columns, cuts, missing_quality))
    return {"photometry": phot_ok, "xp": phot_ok & has_xp(columns),
            "parallax": _all(astrometric_checks(columns, cuts, missing_quality))}


def tokenise(columns: Mapping, cuts: CutSettings = CutSettings(),
             missing_quality: str = "fail") -> tuple[np.ndarray, np.ndarray]:
    """The 121 token values and errors (float32 (n, 121), order ``VOCABULARY``) of each row.

    ``columns``: name -> array, see the module docstring (absent = all NaN). ``cuts``: the
    cuts (:class:`CutSettings`, or a config ``cuts:`` dict). ``missing_quality``: what a
    NaN quality column does, ``"fail"`` (assembly) or ``"pass"`` (prediction).
    """
    cuts = CutSettings.parse(cuts)
    n = n_rows(columns)
    ok = validity(columns, cuts, missing_quality)
    col = {name: _column(columns, name, n) for name in SCALAR_INPUT_COLUMNS}
    G = col["phot_g_mean_mag"]
    values = np.full((n, len(VOCABULARY)), np.nan, dtype=np.float32)
    errors = np.full((n, len(VOCABULARY)), np.nan, dtype=np.float32)

    # XP coefficients of the rows with a valid spectrum
    stars = np.flatnonzero(ok["xp"])
    if stars.size:
        flux = g_flux(G[stars])[:, None]
        for offset, band in ((0, "bp"), (N_XP, "rp")):
            name = f"{band}_coefficients"
            if columns.get(name) is None:
                continue
            coeff = _xp_array(columns, name, n)[stars]
            err_col = columns.get(f"{band}_coefficient_errors")
            err = (_xp_array(columns, f"{band}_coefficient_errors", n)[stars] if err_col is not None
                   else np.full_like(coeff, np.nan))
            n_rel = np.asarray(columns.get(f"{band}_n_relevant_bases", np.zeros(n)))
            rel = relevant(n_rel[stars])
            values[stars, offset:offset + N_XP] = np.where(rel, coeff / flux, np.nan)
            errors[stars, offset:offset + N_XP] = np.where(rel, np.abs(err) / flux, np.nan)

    def put(name, value, error):
        k = TOKEN_INDEX[name]
        values[:, k] = value
        errors[:, k] = error

    put("bp_rp", np.where(ok["photometry"], col["bp_rp"], np.nan), 0.0)
    put("j_h", col["j"] - col["h"], np.sqrt(np.nansum([col["j_err"] ** 2, col["h_err"] ** 2], axis=0)))
    put("j_k", col["j"] - col["k"], np.sqrt(np.nansum([col["j_err"] ** 2, col["k_err"] ** 2], axis=0)))
    for name in ("teff", "logg", "m_h", "alpha_m", "mass"):
        put(name, col[name], col[f"{name}_err"])
    with np.errstate(invalid="ignore", divide="ignore"):  # only if a cut admits age <= 0
        put("ln_age", np.log(col["age_gyr"]), col["age_gyr_err"] / col["age_gyr"])
    put("ln_ebv", col["ln_ebv"], col["ln_ebv_err"])
    g_scale = 10.0 ** (G / 5.0)
    put("pseudo_luminosity", np.where(ok["parallax"], col["parallax_corrected"] * g_scale, np.nan),
        np.abs(col["parallax_error"]) * g_scale)
    # missing value -> NaN (absent) with error 0; missing error of a present value -> 0
    errors[~(np.isfinite(values) & np.isfinite(errors))] = 0.0
    values[~np.isfinite(values)] = np.nan
    return values, np.abs(errors)


def _xp_array(columns: Mapping, name: str, n: int) -> np.ndarray:
    arr = np.asarray(columns[name], dtype=np.float64)
    if arr.shape != (n, N_XP):
        raise StarfmInputError(f"tokenise: column '{name}' has shape {arr.shape}, "
                               f"expected ({n}, {N_XP})")
    return arr
