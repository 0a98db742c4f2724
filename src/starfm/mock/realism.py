"""How real the mock population is: one recipe for the mock's truth and the real asteroseismic samples.

Figures (:func:`realism_figures`) of a sample of giants (columns ``mass``, ``age_gyr``, ``teff``,
``logg``, ``m_h``, ``alpha_m``, ``c_n``):

- ``mass_median`` and ``mass_spread`` (1.4826 x the median absolute deviation) [Msun];
- information ratios, each the 1.4826-MAD scatter of the 5-fold cross-validated residual of an
  XGBoost regressor (300 trees, depth 4, learning rate 0.05) over the 1.4826-MAD spread of the
  target: ``mass|teff,logg,m_h``, ``mass|teff,logg,m_h,c_n`` and ``ln_age|m_h,alpha_m``.
  1 = the inputs say nothing about the target; 0 = they fix it.

The real references (:func:`real_samples`, files of ``../shared/realdata/labels``):
APOKASC-3 Table 4 (gold, alpha-poor, RGB + RC; Pinsonneault et al. 2025): Teff, seismic logg,
[Fe/H] (as [M/H]), [Alp/Fe] (as [alpha/M]), [C/N], mass, evolutionary state; Miglio et al.
(2021) Kepler-APOGEE: mass, age, [Fe/H], [alpha/M], evstate (1 RGB, 2 RC).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from starfm.mock.seismic import APOKASC3, MIGLIO2021, real_samples  # noqa: F401  (re-exported)
XGB_PARAMS = {"n_estimators": 300, "max_depth": 4, "learning_rate": 0.05}
N_FOLDS = 5
RATIOS = {"mass|teff,logg,m_h": ("mass", ("teff", "logg", "m_h")),
          "mass|teff,logg,m_h,c_n": ("mass", ("teff", "logg", "m_h", "c_n")),
          "ln_age|m_h,alpha_m": ("ln_age", ("m_h", "alpha_m"))}


def robust_spread(x) -> float:
    """1.4826 x the median absolute deviation (the Gaussian sigma of a clean sample)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def information_ratio(features: np.ndarray, target: np.ndarray, seed: int = 0) -> float:
    """Cross-validated residual scatter over target spread (module docstring); NaN rows dropped."""
    import xgboost

    x = np.asarray(features, dtype=float)
    y = np.asarray(target, dtype=float)
    ok = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
    x, y = x[ok], y[ok]
    fold = np.random.default_rng(seed).permutation(len(y)) % N_FOLDS
    pred = np.empty_like(y)
    for k in range(N_FOLDS):
        test = fold == k
        params = {"max_depth": XGB_PARAMS["max_depth"], "eta": XGB_PARAMS["learning_rate"],
                  "seed": seed, "nthread": 1, "tree_method": "hist", "objective": "reg:squarederror"}
        booster = xgboost.train(params, xgboost.DMatrix(x[~test], label=y[~test]),
                                num_boost_round=XGB_PARAMS["n_estimators"])
        pred[test] = booster.predict(xgboost.DMatrix(x[test]))
    return robust_spread(y - pred) / robust_spread(y)


def realism_figures(sample: dict, ratios=tuple(RATIOS), seed: int = 0) -> dict[str, float]:
    """``mass_median``, ``mass_spread`` and the requested information ratios of ``sample``
    (a ratio whose columns the sample lacks is left out)."""
    cols = dict(sample)
    if "age_gyr" in cols:
        cols["ln_age"] = np.log(np.asarray(cols["age_gyr"], dtype=float))
    out = {"mass_median": float(np.nanmedian(cols["mass"])), "mass_spread": robust_spread(cols["mass"])}
    for name in ratios:
        target, inputs = RATIOS[name]
        if target in cols and all(c in cols for c in inputs):
            out[name] = information_ratio(np.column_stack([cols[c] for c in inputs]), cols[target], seed)
    return out


