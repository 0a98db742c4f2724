"""The input settings under which the transformer and XGBoost are compared (SPEC §4, issue 10).

The ONE place that defines them: the baseline stage trains one XGBoost model set per setting
with ``xgboost=True`` on exactly that setting's ``inputs``; the evaluate stage gives the
transformer the same list, scores both, and writes ``metrics.json`` ``settings.<name>`` and
``predictions.h5`` ``settings/<name>``; figures read them by name.

- ``standard`` (the headline; Zhang et al. 2026 §4.1 "the standard configuration", Leung & Bovy
  2024 §6.1): bp0-29, rp0-29, J-H, J-K, BP-RP (63 tokens), for both models. Figs. 4-5 (a)/(b).
- ``standard+pseudo_luminosity``: those plus the pseudo-luminosity (64 tokens; XGBoost too).
  Not a paper setting: the parallax luminosity carries mass information (L ∝ M at fixed Teff
  and logg), so it is an extra row, each model seeing it.
- ``standard+pseudo_luminosity+ln_ebv``: also ln E(B-V). The model's context holds at most 64
  tokens (``ModelConfig.context_max``) and 63 + 2 = 65, so this setting drops the two least
  informative coefficients of the standard list, bp29 and rp29, for BOTH models: bp0-28,
  rp0-28, J-H, J-K, BP-RP, pseudo-luminosity, ln E(B-V) (63 tokens).
- robustness settings of Figs. 4-5 (c)-(f), transformer only:
  ``first5`` (c): bp0-4, rp0-4 (10 tokens: a short context);
  ``random64`` (d): for each star a random 64 of its present XP coefficients and colours (pool
  bp0-54, rp0-54, BP-RP, J-H, J-K), in random order, seeded (:func:`random_subset_mask`);
  ``high_order`` (e): only the coefficients the paper calls dominated by noise, bp25-54 and
  rp25-54 (Zhang+26 §4.1 "indices 25-54"; 60 tokens): stars without any of them present get no
  prediction and are not scored; the predicted uncertainties must grow;
  ``high_order+labels`` (f): the five labels (Teff, logg, [M/H], mass, ln age) mixed into
  those (identity test: a label given as input must come back). 5 + 60 = 65 > 64, so the two
  highest-order coefficients bp54 and rp54 (the least informative) are dropped: 63 tokens.

The encoder has no positional encoding (``starfm.model``), so the order of a context does not
change a prediction; "random order" (d) and "mixed into" (f) are kept literally anyway.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starfm import tokens

CONTEXT_MAX = 64   # starfm.model.ModelConfig.context_max (paper): no fixed setting may exceed it


@dataclass(frozen=True)
class InputSetting:
    """One input setting. ``inputs``: token names in context order (for ``random_subset``, the
    pool each star's subset is drawn from). ``xgboost``: an XGBoost is trained on exactly these
    inputs. ``panel``: the Figs. 4-5 panel of the transformer's row."""
    name: str
    inputs: tuple[str, ...]
    xgboost: bool
    panel: str
    description: str
    random_subset: int | None = None


def _mix(labels: list[str], coefficients: list[str]) -> list[str]:
    """``labels`` spread evenly through ``coefficients`` (deterministic, "mixed into")."""
    out = list(coefficients)
    step = len(coefficients) // len(labels)
    for i, label in enumerate(labels):
        out.insert(i * (step + 1) + step // 2, label)
    return out


STANDARD = tokens.XP_BP[:30] + tokens.XP_RP[:30] + ["j_h", "j_k", "bp_rp"]
HIGH_ORDER = tokens.XP_BP[25:] + tokens.XP_RP[25:]
LABEL_INPUTS = ["teff", "logg", "m_h", "mass", "ln_age"]
RANDOM_POOL = tokens.XP_BP + tokens.XP_RP + tokens.COLOURS

_SETTINGS = [
    InputSetting("standard", tuple(STANDARD), True, "b",
                 "bp0-29, rp0-29, J-H, J-K, BP-RP: the papers' standard inputs, both models"),
    InputSetting("standard+pseudo_luminosity", tuple(STANDARD + ["pseudo_luminosity"]), True, "",
                 "standard + pseudo-luminosity (parallax), both models"),
    InputSetting("standard+pseudo_luminosity+ln_ebv",
                 tuple(tokens.XP_BP[:29] + tokens.XP_RP[:29]
                       + ["j_h", "j_k", "bp_rp", "pseudo_luminosity", "ln_ebv"]), True, "",
                 "standard without bp29/rp29 (64-token context) + pseudo-luminosity + "
                 "ln E(B-V), both models"),
    InputSetting("first5", tuple(tokens.XP_BP[:5] + tokens.XP_RP[:5]), False, "c",
                 "bp0-4, rp0-4 only: a short context"),
    InputSetting("random64", tuple(RANDOM_POOL), False, "d",
                 "a random 64 of each star's present XP coefficients and colours, random order "
                 "(seeded)", random_subset=64),
    InputSetting("high_order", tuple(HIGH_ORDER), False, "e",
                 "bp25-54, rp25-54 only (noise-dominated): uncertainties must grow"),
    InputSetting("high_order+labels",
                 tuple(_mix(LABEL_INPUTS, tokens.XP_BP[25:54] + tokens.XP_RP[25:54])), False, "f",
                 "Teff, logg, [M/H], mass, ln age mixed into bp25-53, rp25-53 (bp54/rp54 dropped "
                 "for the 64-token context): identity, the labels must come back"),
]
SETTINGS: dict[str, InputSetting] = {s.name: s for s in _SETTINGS}
HEADLINE = "standard"
XGBOOST_SETTINGS: list[str] = [s.name for s in _SETTINGS if s.xgboost]

for _s in _SETTINGS:
    assert len(set(_s.inputs)) == len(_s.inputs), _s.name
    assert all(t in tokens.TOKEN_INDEX for t in _s.inputs), _s.name
    assert _s.random_subset is not None or len(_s.inputs) <= CONTEXT_MAX, _s.name
assert len(STANDARD) == 63 and SETTINGS["high_order+labels"].inputs.__len__() == 63


def random_subset_mask(present: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``present`` (n, m) bool, keep a random ``k`` of its True entries (all if
    fewer); also one random order of the m pool columns. Vectorised: random keys, absent last.

    Returns (keep (n, m) bool, order (m,) int: a permutation of the pool).
    """
    rng = np.random.default_rng(seed)
    keys = rng.random(present.shape)
    keys[~present] = np.inf
    rank = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    keep = present & (rank < k)
    return keep, rng.permutation(present.shape[1])
