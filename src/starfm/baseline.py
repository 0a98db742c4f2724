"""XGBoost baseline (SPEC §4): one regressor per label, for each XGBoost input setting.

The "expert model" the paper compares the transformer with, trained on exactly the inputs the
transformer gets in each setting of ``starfm.input_settings`` with ``xgboost=True``:
``standard`` (bp0-29, rp0-29, J-H, J-K, BP-RP; the headline), ``standard+pseudo_luminosity`` and
``standard+pseudo_luminosity+ln_ebv``. Inputs are the physical token values of ``dataset.h5``
(NaN = absent; XGBoost's ``hist`` method learns a default branch for missing values, so no
imputation). One booster per label and setting, each trained on the train-split rows where that
label is present. Age is regressed in ``ln_age`` (the token, ln of age in Gyr) because its
distribution and errors are closer to symmetric in log space; evaluation reports it in Gyr.

Early stopping: 10 % of the train split (seeded; the same stars for every label and setting) is
held out; each booster keeps the iteration with the lowest held-out RMSE (patience 50 rounds), so
``n_estimators`` is an upper bound. This guards against over-fitting a small (mock) train split
at no cost on the real one.

All boosters go into ONE JSON file: ``{"format": "starfm-xgboost-baseline-v2", "settings":
{name: {"inputs": [...], "targets": {token: {"booster": <XGBoost JSON model>, "best_iteration":
int, ...}}}}, "n_estimators", "seed", "params", ...}``; :func:`load_baselines` reads every setting
back, :func:`load_baseline` one (default ``standard``).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from starfm import input_settings, tokens
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.dataset import Dataset, read_dataset
from starfm.errors import StarfmInputError
from starfm.tables import atomic_path
from starfm.settings import add_settings_argument, parse_settings

log = logging.getLogger("starfm.baseline")

FORMAT = "starfm-xgboost-baseline-v2"
# label as reported (tokens.TARGETS) -> token the booster regresses
TARGET_TOKENS = {"mass": "mass", "age": "ln_age", "teff": "teff", "logg": "logg", "m_h": "m_h",
                 "alpha_m": "alpha_m"}
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
        """``values`` (n, 121) physical token units -> {label: prediction (n,)}; age in Gyr."""
        import xgboost as xgb
        x = np.asarray(values, dtype=np.float32)[:, tokens.index(self.inputs)]
        dm = xgb.DMatrix(x, missing=np.nan, feature_names=self.inputs)
        out = {}
        for label in labels:
            token = TARGET_TOKENS[label]
            if token not in self.boosters:      # a label the baseline had no data for
                out[label] = np.full(len(x), np.nan)
                continue
            pred = self.boosters[token].predict(
                dm, iteration_range=(0, self.best_iteration[token] + 1))
            out[label] = np.exp(pred) if token == "ln_age" else pred
        return out


def _read_doc(path: Path) -> dict:
    if not path.exists():
        raise StarfmInputError(f"{path}: file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise StarfmInputError(f"{path}: not a JSON baseline file ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise StarfmInputError(f"{path}: not a starfm XGBoost baseline of this version (format "
                               f"{found!r} != {FORMAT!r}); rerun the baseline stage")
    if not isinstance(doc.get("settings"), dict) or not doc["settings"]:
        raise StarfmInputError(f"{path}: has no 'settings'")
    return doc


def _baseline_from_entry(path: Path, name: str, entry: dict) -> Baseline:
    import xgboost as xgb
    missing = [t for t in TARGET_TOKENS.values() if t not in entry.get("targets", {})]
    if missing:
        raise StarfmInputError(f"{path}: setting '{name}' has no regressor for {missing}")
    unknown = [n for n in entry.get("inputs", []) if n not in tokens.TOKEN_INDEX]
    if unknown or not entry.get("inputs"):
        raise StarfmInputError(f"{path}: setting '{name}' inputs {unknown or '[]'} are not in "
                               f"the token vocabulary")
    boosters, best = {}, {}
    for token, target in entry["targets"].items():
        if target.get("booster") is None:   # the label had no train data: predictions NaN
            continue
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(json.dumps(target["booster"]).encode()))
        except xgb.core.XGBoostError as exc:
            raise StarfmInputError(f"{path}: corrupt booster for '{token}' in setting "
                                   f"'{name}' ({exc})") from exc
        boosters[token] = booster
        best[token] = int(target["best_iteration"])
    return Baseline(list(entry["inputs"]), boosters, best)


@dataclass(frozen=True)
class BaselineSettings:
    """config.yaml ``baseline:`` (defaults = the schema's)."""

    SECTION = "baseline"
    n_estimators: int = 2000    # maximum boosting rounds per label (the paper's 2000)
    seed: int = 5               # seed of XGBoost and its hold-out


def load_baselines(path: str | Path) -> dict[str, Baseline]:
    """Every setting of the single-file baseline written by :func:`train_baseline`."""
    path = Path(path)
    doc = _read_doc(path)
    return {name: _baseline_from_entry(path, name, entry)
            for name, entry in doc["settings"].items()}


def load_baseline(path: str | Path, setting: str = input_settings.HEADLINE) -> Baseline:
    """One setting (default the standard inputs) of the file written by :func:`train_baseline`."""
    path = Path(path)
    doc = _read_doc(path)
    if setting not in doc["settings"]:
        raise StarfmInputError(f"{path}: has no setting '{setting}' (it has "
                               f"{sorted(doc['settings'])})")
    return _baseline_from_entry(path, setting, doc["settings"][setting])


def fit_booster(xgb, x_fit, y_fit, x_valid, y_valid, params: dict, n_estimators: int,
                feature_names=None):
    """One booster on (x_fit, y_fit), early-stopped on the valid rows when there are any
    (patience :data:`EARLY_STOPPING_ROUNDS`, else all ``n_estimators`` rounds): (booster, best
    iteration, valid RMSE at it - NaN without valid rows). NaN inputs are absent."""
    dfit = xgb.DMatrix(x_fit, label=y_fit, missing=np.nan, feature_names=feature_names)
    evals, kwargs = [], {}
    has_valid = len(y_valid) > 0
    if has_valid:
        dvalid = xgb.DMatrix(x_valid, label=y_valid, missing=np.nan, feature_names=feature_names)
        evals = [(dvalid, "valid")]
        kwargs["early_stopping_rounds"] = EARLY_STOPPING_ROUNDS
    history: dict = {}
    booster = xgb.train(params, dfit, num_boost_round=n_estimators, evals=evals,
                        evals_result=history, verbose_eval=False, **kwargs)
    best = int(getattr(booster, "best_iteration", n_estimators - 1)) if has_valid \
        else booster.num_boosted_rounds() - 1
    rmse = float(history["valid"]["rmse"][best]) if has_valid else float("nan")
    return booster, best, rmse


def _train_one(xgb, ds: Dataset, train: np.ndarray, held_out: np.ndarray, inputs: list[str],
               params: dict, n_estimators: int, setting: str) -> tuple[dict, dict]:
    """Boosters of every label on ``inputs``: ({token: entry for the file}, {token: summary})."""
    x_all = ds.values[:, tokens.index(inputs)]
    if not np.isfinite(x_all[train]).any():
        raise StarfmInputError(f"{ds.path}: every input of setting '{setting}' ({inputs[0]}.."
                               f"{inputs[-1]}) is NaN in the train split")
    entries, summary = {}, {}
    for label, token in TARGET_TOKENS.items():
        y = ds.column(token)
        rows = train & np.isfinite(y)
        if rows.sum() == 0:    # a label without any data (library mode: mass): no booster
            log.warning("%-34s %-8s no train row has this label: no booster", setting, token)
            summary[token] = {"n_train": 0, "n_valid": 0, "best_iteration": -1,
                              "valid_rmse": float("nan")}
            entries[token] = {"booster": None, **summary[token]}
            continue
        if rows.sum() < 2:
            raise StarfmInputError(f"{ds.path}: fewer than 2 train rows have '{token}'")
        fit, valid = rows & ~held_out, rows & held_out
        if valid.sum() == 0 or fit.sum() == 0:     # tiny data: no early stopping
            fit, valid = rows, np.zeros_like(rows)
        booster, best, rmse = fit_booster(xgb, x_all[fit], y[fit], x_all[valid], y[valid],
                                          params, n_estimators, feature_names=inputs)
        summary[token] = {"n_train": int(fit.sum()), "n_valid": int(valid.sum()),
                          "best_iteration": best, "valid_rmse": rmse}
        log.info("%-34s %-8s n_train=%d n_valid=%d best_iteration=%d valid RMSE=%.4g", setting,
                 token, fit.sum(), valid.sum(), best, rmse)
        entries[token] = {"booster": json.loads(booster.save_raw("json").decode()),
                          **summary[token]}
    return entries, summary


def train_baseline(dataset: str | Path, out: str | Path, n_estimators: int = 2000, seed: int = 5,
                   threads: int = 2, settings=None) -> dict:
    """Train one XGBoost regressor per label and XGBoost setting on the train split; write ``out``.

    ``settings``: names from ``starfm.input_settings`` (default every setting with
    ``xgboost=True``); each is trained on exactly that setting's ``inputs``.
    Returns ``{setting: {token: {"n_train", "n_valid", "best_iteration", "valid_rmse"}}}``.
    """
    import xgboost as xgb
    if n_estimators < 1:
        raise StarfmInputError(f"--n-estimators must be >= 1 (got {n_estimators})")
    names = list(input_settings.XGBOOST_SETTINGS if settings is None else settings)
    bad = [n for n in names if n not in input_settings.SETTINGS
           or not input_settings.SETTINGS[n].xgboost]
    if bad or not names:
        raise StarfmInputError(f"baseline settings {bad or names} are not XGBoost settings of "
                               f"starfm.input_settings ({input_settings.XGBOOST_SETTINGS})")
    ds = read_dataset(dataset)
    train = ~ds.is_test
    if not train.any():
        raise StarfmInputError(f"{ds.path}: the train split is empty (every row has is_test)")
    rng = np.random.default_rng(seed)
    # one hold-out assignment for all labels and settings, so the boosters see the same stars
    held_out = rng.random(len(ds.values)) < VALIDATION_FRACTION
    params = dict(XGB_PARAMS, seed=seed, nthread=threads)
    doc = {"format": FORMAT, "settings": {}, "n_estimators": n_estimators,
           "seed": seed, "params": params, "dataset": str(ds.path),
           "note": "per setting: the exact inputs (as the transformer gets them); age is "
                   "regressed as ln_age (ln Gyr); predict with iteration_range "
                   "(0, best_iteration + 1)"}
    summary = {}
    for name in names:
        inputs = list(input_settings.SETTINGS[name].inputs)
        entries, summary[name] = _train_one(xgb, ds, train, held_out, inputs, params,
                                            n_estimators, name)
        doc["settings"][name] = {"inputs": inputs, "targets": entries}
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(doc))
    log.info("wrote %s (%d settings x %d regressors)", out, len(doc["settings"]),
             len(TARGET_TOKENS))
    return summary


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("baseline", "Train the XGBoost baseline on the train split of "
                          "dataset.h5, one regressor per label (age in ln) for each XGBoost "
                          "input setting of starfm.input_settings (standard = bp0-29, rp0-29, "
                          "J-H, J-K, BP-RP; + pseudo-luminosity; + ln E(B-V)), early-stopped on "
                          "a 10%% hold-out, all saved in one JSON file.")
    parser.add_argument("--dataset", required=True, help="dataset.h5 from the assemble stage")
    parser.add_argument("--threads", type=int, default=2, help="XGBoost threads")
    parser.add_argument("--out", required=True, help="output JSON (all settings and regressors)")
    add_settings_argument(parser, BaselineSettings)
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    s = parse_settings(BaselineSettings, args.settings)
    # XGBoost's OpenMP threads busy-wait between parallel regions by default; on a shared,
    # oversubscribed machine that burns the CPU the other thread needs (measured on our 2 shared
    # cores: 100 rounds 68 s wall / 19 s CPU, with PASSIVE 4.5 s / 1.5 s). Set before xgboost
    # (and its libgomp) is loaded; a value the user set wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    train_baseline(args.dataset, args.out, s.n_estimators, s.seed, args.threads)
    return 0
