"""Fig. 19: the first RP coefficient (RP[0] / F_G) from the model vs an XGBoost expert, as inputs grow.

Three input sets: the labels (Teff, logg, [M/H], mass, ln age) without extinction information;
plus J-H and J-K; plus BP-RP. For each, a small XGBoost regressor is trained inside the figure
on the train split (seeded subsample, hist method, early stopping on a held-out tenth) and both
models predict RP[0] for the test stars that have every input. Top: the transformer coloured by
its predicted sigma; bottom: XGBoost as a log-density.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starfm import tokens
from starfm.figures.common import LABEL_TEXT, finite_float, one_to_one, plt, robust_scatter, subsample

LABELS = ["teff", "logg", "m_h", "mass", "ln_age"]
INPUT_SETS = {"labels": LABELS, "labels+JH+JK": LABELS + ["j_h", "j_k"],
              "labels+JH+JK+BP-RP": LABELS + ["j_h", "j_k", "bp_rp"]}
TARGET = "rp0"


@dataclass(frozen=True)
class Settings:
    n_estimators: int = 200
    max_train_stars: int = 8000
    seed: int = 0
    threads: int = 1


def _xgboost(x_train, y_train, x_test, s: Settings) -> np.ndarray:
    import xgboost as xgb
    rng = np.random.default_rng(s.seed)
    valid = rng.random(len(y_train)) < 0.1
    params = {"tree_method": "hist", "objective": "reg:squarederror", "eta": 0.1, "max_depth": 6,
              "subsample": 0.8, "colsample_bytree": 1.0, "seed": s.seed, "nthread": s.threads}
    dfit = xgb.DMatrix(x_train[~valid], label=y_train[~valid], missing=np.nan)
    dval = xgb.DMatrix(x_train[valid], label=y_train[valid], missing=np.nan)
    booster = xgb.train(params, dfit, num_boost_round=s.n_estimators, evals=[(dval, "valid")],
                        early_stopping_rounds=30, verbose_eval=False)
    return booster.predict(xgb.DMatrix(x_test, missing=np.nan),
                           iteration_range=(0, booster.best_iteration + 1))


def prepare_rp0_vs_xgboost(ds, model, s: Settings = Settings(), batch_size: int = 4096) -> dict:
    v = ds.values.astype(float)
    y_all = v[:, tokens.TOKEN_INDEX[TARGET]]
    out = {}
    for name, inputs in INPUT_SETS.items():
        x_all = v[:, tokens.index(inputs)]
        usable = np.isfinite(y_all) & np.all(np.isfinite(x_all), axis=1)
        train = np.flatnonzero(usable & ~ds.is_test)
        train = train[subsample(len(train), s.max_train_stars, s.seed)]
        test = np.flatnonzero(usable & ds.is_test)
        mean, std = model.predict(v[test], inputs=inputs, outputs=[TARGET], batch_size=batch_size)
        xgb_pred = _xgboost(x_all[train], y_all[train], x_all[test], s)
        obs = y_all[test]
        out[name] = {"observed": obs, "transformer": np.asarray(mean, float)[:, 0],
                     "sigma": np.asarray(std, float)[:, 0], "xgboost": np.asarray(xgb_pred, float),
                     "n_train": int(len(train))}
        for m in ("transformer", "xgboost"):
            out[name][f"{m}_scatter"] = robust_scatter(out[name][m] - obs)
    return out


def plot_rp0_vs_xgboost(d: dict):
    pyplot = plt()
    fig, axes = pyplot.subplots(2, 3, figsize=(18, 10.5), constrained_layout=True)
    for col, name in enumerate(INPUT_SETS):
        e = d[name]
        for row, m in enumerate(("transformer", "xgboost")):
            ax = axes[row, col]
            text = f"$\\sigma$ = {e[f'{m}_scatter']:.2e}\nn = {len(e['observed'])}"
            if m == "transformer":
                one_to_one(ax, fig, e["observed"], e[m], colour=e["sigma"],
                           colour_label=r"$\sigma_{\rm model}$ [RP[0] / $F_G$]", text=text)
            else:
                one_to_one(ax, fig, e["observed"], e[m], density=True, text=text)
            ax.set(xlabel=f"observed {LABEL_TEXT['rp0']}", ylabel=f"predicted {LABEL_TEXT['rp0']}",
                   title=f"{'transformer' if m == 'transformer' else 'XGBoost'}: inputs {name}")
    fig.suptitle("Fig. 19: RP[0] from the foundation model (top) and an XGBoost expert (bottom) as "
                 "inputs grow (test split)")
    return fig


def build(inputs, s):
    d = prepare_rp0_vs_xgboost(inputs.ds, inputs.model, s)
    numbers = {name: {"transformer_scatter": finite_float(e["transformer_scatter"]),
                      "xgboost_scatter": finite_float(e["xgboost_scatter"]),
                      "transformer_median_sigma": finite_float(np.nanmedian(e["sigma"])),
                      "n_test": int(len(e["observed"])), "n_train": e["n_train"]}
               for name, e in d.items()}
    return plot_rp0_vs_xgboost(d), numbers
