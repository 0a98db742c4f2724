"""XGBoost baseline (SPEC §4): bp0-29, rp0-29, J-H, J-K, BP-RP -> one regressor per label.

The "expert model" the paper compares the transformer with. Inputs are the physical token values
of ``dataset.h5`` (NaN = absent; XGBoost's ``hist`` method learns a default branch for missing
values, so no imputation). One booster per label, each trained on the train-split rows where that
label is present. Age is regressed in ``ln_age`` (the token, ln of age in Gyr) because its
distribution and errors are closer to symmetric in log space; evaluation reports it in Gyr.

Early stopping: 10 % of the train split (seeded) is held out; each booster keeps the iteration with
the lowest held-out RMSE (patience 50 rounds), so ``n_estimators`` is an upper bound. This guards
against over-fitting a small (mock) train split at no cost on the real one.

All boosters go into ONE JSON file: ``{"format": ..., "inputs": [...], "targets": {token:
{"booster": <XGBoost JSON model>, "best_iteration": int, ...}}, ...}``; :func:`load_baseline`
reads it back for evaluation.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from starfm import tokens
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.dataset import read_dataset
from starfm.io import StarfmInputError, atomic_path
from starfm.settings import add_settings_argument, parse_settings

log = logging.getLogger("starfm.baseline")

FORMAT = "starfm-xgboost-baseline-v1"
# label as reported (tokens.TARGETS) -> token the booster regresses
TARGET_TOKENS = {"mass": "mass", "age": "ln_age", "teff": "teff", "logg": "logg", "m_h": "m_h"}
VALIDATION_FRACTION = 0.1
EARLY_STOPPING_ROUNDS = 50
# eta 0.1 with depth 6: a standard, well-behaved setting for a few hundred to 2,000 trees.
XGB_PARAMS = {"tree_method": "hist", "objective": "reg:squarederror", "eta": 0.1, "max_depth": 6,
              "subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 1.0}


@dataclass
class Baseline:
    """The trained boosters; :meth:`predict` returns labels in natural units (age in Gyr)."""
    inputs: list[str]
    boosters: dict          # token -> xgboost.Booster
    best_iteration: dict    # token -> int

    def predict(self, values: np.ndarray, labels=tokens.TARGETS) -> dict[str, np.ndarray]:
        """``values`` (n, 120) physical token units -> {label: prediction (n,)}; age in Gyr."""
        import xgboost as xgb
        x = np.asarray(values, dtype=np.float32)[:, tokens.index(self.inputs)]
        dm = xgb.DMatrix(x, missing=np.nan, feature_names=self.inputs)
        out = {}
        for label in labels:
            token = TARGET_TOKENS[label]
            pred = self.boosters[token].predict(
                dm, iteration_range=(0, self.best_iteration[token] + 1))
            out[label] = np.exp(pred) if token == "ln_age" else pred
        return out


def load_baseline(path: str | Path) -> Baseline:
    """Read the single-file baseline written by :func:`train_baseline`."""
    import xgboost as xgb
    path = Path(path)
    if not path.exists():
        raise StarfmInputError(f"{path}: file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StarfmInputError(f"{path}: not a JSON baseline file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise StarfmInputError(f"{path}: not a starfm XGBoost baseline (format != {FORMAT})")
    missing = [t for t in TARGET_TOKENS.values() if t not in doc["targets"]]
    if missing:
        raise StarfmInputError(f"{path}: has no regressor for {missing}")
    unknown = [n for n in doc["inputs"] if n not in tokens.TOKEN_INDEX]
    if unknown:
        raise StarfmInputError(f"{path}: inputs {unknown} are not in the token vocabulary")
    boosters, best = {}, {}
    for token, entry in doc["targets"].items():
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(json.dumps(entry["booster"]).encode()))
        except xgb.core.XGBoostError as exc:
            raise StarfmInputError(f"{path}: corrupt booster for '{token}' ({exc})") from exc
        boosters[token] = booster
        best[token] = int(entry["best_iteration"])
    return Baseline(list(doc["inputs"]), boosters, best)


@dataclass(frozen=True)
class BaselineSettings:
    """config.yaml ``baseline:`` (defaults = the schema's)."""

    SECTION = "baseline"
    n_estimators: int = 300     # maximum boosting rounds per label (paper 2000)
    seed: int = 5               # seed of XGBoost and its hold-out


def train_baseline(dataset: str | Path, out: str | Path, n_estimators: int = 300, seed: int = 5,
                   threads: int = 2) -> dict:
    """Train one XGBoost regressor per label on the train split of ``dataset``; write ``out``.

    Returns a summary ``{token: {"n_train", "n_valid", "best_iteration", "valid_rmse"}}``.
    """
    import xgboost as xgb
    if n_estimators < 1:
        raise StarfmInputError(f"baseline.n_estimators must be >= 1 (got {n_estimators})")
    ds = read_dataset(dataset)
    train = ~ds.is_test
    if not train.any():
        raise StarfmInputError(f"{ds.path}: the train split is empty (every row has is_test)")
    inputs = list(tokens.BASELINE_INPUTS)
    x_all = ds.values[:, tokens.index(inputs)]
    if not np.isfinite(x_all[train]).any():
        raise StarfmInputError(f"{ds.path}: every baseline input {inputs[0]}..{inputs[-1]} is NaN "
                               f"in the train split")
    rng = np.random.default_rng(seed)
    # one hold-out assignment for all labels, so the boosters see the same stars
    held_out = rng.random(len(ds.values)) < VALIDATION_FRACTION
    params = dict(XGB_PARAMS, seed=seed, nthread=threads)
    doc = {"format": FORMAT, "inputs": inputs, "targets": {}, "n_estimators": n_estimators,
           "seed": seed, "params": params, "dataset": str(ds.path),
           "note": "age is regressed as ln_age (ln Gyr); predict with iteration_range "
                   "(0, best_iteration + 1)"}
    summary = {}
    for label, token in TARGET_TOKENS.items():
        y = ds.column(token)
        rows = train & np.isfinite(y)
        if rows.sum() < 2:
            raise StarfmInputError(f"{ds.path}: fewer than 2 train rows have '{token}'")
        fit, valid = rows & ~held_out, rows & held_out
        if valid.sum() == 0 or fit.sum() == 0:     # tiny data: no early stopping
            fit, valid = rows, np.zeros_like(rows)
        dfit = xgb.DMatrix(x_all[fit], label=y[fit], missing=np.nan, feature_names=inputs)
        evals, kwargs = [], {}
        if valid.any():
            dvalid = xgb.DMatrix(x_all[valid], label=y[valid], missing=np.nan,
                                 feature_names=inputs)
            evals = [(dvalid, "valid")]
            kwargs["early_stopping_rounds"] = EARLY_STOPPING_ROUNDS
        history: dict = {}
        booster = xgb.train(params, dfit, num_boost_round=n_estimators, evals=evals,
                            evals_result=history, verbose_eval=False, **kwargs)
        best = int(getattr(booster, "best_iteration", n_estimators - 1)) if valid.any() \
            else booster.num_boosted_rounds() - 1
        rmse = float(history["valid"]["rmse"][best]) if valid.any() else float("nan")
        summary[token] = {"n_train": int(fit.sum()), "n_valid": int(valid.sum()),
                          "best_iteration": best, "valid_rmse": rmse}
        log.info("%-8s n_train=%d n_valid=%d best_iteration=%d valid RMSE=%.4g", token,
                 fit.sum(), valid.sum(), best, rmse)
        doc["targets"][token] = {"booster": json.loads(booster.save_raw("json").decode()),
                                 **summary[token]}
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(doc))
    log.info("wrote %s (%d regressors)", out, len(doc["targets"]))
    return summary


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("baseline", "Train the XGBoost baseline (inputs bp0-29, rp0-29, J-H, "
                          "J-K, BP-RP; one regressor per label, age in ln) on the train split of "
                          "dataset.h5, early-stopped on a 10%% hold-out, saved as one JSON file.")
    parser.add_argument("--dataset", required=True, help="dataset.h5 from the assemble stage")
    parser.add_argument("--threads", type=int, default=2, help="XGBoost threads")
    parser.add_argument("--out", required=True, help="output JSON (all regressors)")
    add_settings_argument(parser, BaselineSettings)
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    s = parse_settings(BaselineSettings, args.settings)
    train_baseline(args.dataset, args.out, s.n_estimators, s.seed, args.threads)
    return 0
