"""Metrics of the transformer and the XGBoost baseline on the test split, per input setting (SPEC §4).

Input settings (``starfm.input_settings``, the one place that defines them): ``standard``
(bp0-29, rp0-29, J-H, J-K, BP-RP; the papers' comparison on identical inputs, the headline),
``standard+pseudo_luminosity``, ``standard+pseudo_luminosity+ln_ebv`` (both models, XGBoost
trained on exactly that setting's inputs) and the transformer-only robustness settings of
Figs. 4-5 (c)-(f): ``first5``, ``random64``, ``high_order``, ``high_order+labels``. Every model
of one setting gets the identical ``inputs`` list.

For each setting, label (mass, age, Teff, logg, [M/H]) and model, on the test-split stars where
the label is present and the model gave a prediction:

- ``scatter`` = 1.4826 * MAD of the residuals (prediction - label) in the label's natural unit
  (mass Msun, age Gyr = exp(ln_age), Teff K, logg and [M/H] dex);
- ``bias`` = median residual, ``n`` = number of stars;
- transformer only: the z-score (mean - label) / sqrt(sigma_pred^2 + sigma_label^2) in token
  space (ln_age for age, where the model's Gaussian lives). ``zscore_std`` is its plain standard
  deviation (1 = calibrated), ``zscore_robust_std`` is 1.4826 * MAD, which a few catastrophic
  outliers cannot inflate; ``mean_sigma`` the mean predicted sigma (natural units) and, for every
  setting but ``standard``, ``sigma_ratio_vs_standard`` = mean sigma of this setting / mean sigma
  of ``standard`` in token space (ln_age for age) over the stars both predicted.

Where ``dataset.h5`` has a ``truth`` group (mock survey) both models are also scored against the
true values (``"truth"`` section; z-score there uses sigma_pred alone).

``metrics.json``::

    {"transformer": {label: {...}}, "xgboost": {label: {...}}, "truth": {...}},  # = settings.standard
     "n_test", "transformer_inputs", "xgboost_inputs",                          # standard's inputs
     "settings": {name: {"inputs": [...], "panel", "description", "xgboost_trained": bool,
                         ["random_subset": 64, "seed": s,]                      # random64 only
                         "transformer": {label: {...}}, ["xgboost": {label: {...}},]
                         ["truth": {"transformer": ..., ["xgboost": ...]}]}}, "notes"}

``predictions.h5`` (one row per test star, natural units; sigma of age in Gyr by the delta
method, exp(mu) * sigma_ln):

- root columns = the ``standard`` setting: ``source_id``; per label ``label_<l>``,
  ``label_<l>_err``, ``transformer_<l>``, ``transformer_<l>_sigma``, ``transformer_<l>_zscore``,
  ``xgboost_<l>``, and ``truth_<l>`` where known;
- one group per setting, ``settings/<name>``, with the same columns (``xgboost_<l>`` only where
  XGBoost has that setting; NaN where the model gave no prediction, e.g. ``high_order`` for a star
  without high-order coefficients); root attribute ``settings`` = {name: inputs}.
"""
from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from starfm import tokens
from starfm.baseline import TARGET_TOKENS, Baseline, load_baselines
from starfm.dataset import Dataset, read_dataset
from starfm.input_settings import (CONTEXT_MAX, HEADLINE, SETTINGS, InputSetting,
                                   random_subset_mask)
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.errors import StarfmInputError
from starfm.tables import atomic_path, json_safe, read_table, write_table
from starfm.settings import add_settings_argument, parse_settings

log = logging.getLogger("starfm.evaluate")

UNITS = tokens.TARGET_UNITS
# label -> column of the dataset's truth group (docs/data_products.md, mock/truth.h5)
TRUTH_COLUMNS = {"mass": "mass", "age": "age_gyr", "teff": "teff", "logg": "logg", "m_h": "m_h",
                 "alpha_m": "alpha_m"}
MAD_TO_SIGMA = 1.4826


def robust_scatter(x: np.ndarray) -> float:
    """1.4826 * median absolute deviation about the median (NaN for no data)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))


def residual_metrics(pred: np.ndarray, label: np.ndarray) -> dict:
    """scatter (1.4826 MAD), bias (median) and n of ``pred - label`` over rows where both exist."""
    resid = np.asarray(pred, float) - np.asarray(label, float)
    resid = resid[np.isfinite(resid)]
    return {"scatter": robust_scatter(resid),
            "bias": float(np.median(resid)) if resid.size else float("nan"),
            "n": int(resid.size)}


def zscore(mean, sigma_pred, label, sigma_label) -> np.ndarray:
    """(mean - label) / sqrt(sigma_pred^2 + sigma_label^2); NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (np.asarray(mean, float) - label) / np.sqrt(np.asarray(sigma_pred, float) ** 2
                                                        + np.asarray(sigma_label, float) ** 2)
    z[~np.isfinite(z)] = np.nan
    return z


def _zscore_stats(z: np.ndarray) -> dict:
    z = z[np.isfinite(z)]
    return {"zscore_std": float(np.std(z)) if z.size > 1 else float("nan"),
            "zscore_robust_std": robust_scatter(z)}


def _to_natural(label: str, x: np.ndarray) -> np.ndarray:
    return np.exp(x) if TARGET_TOKENS[label] == "ln_age" else x


def load_model(path: str | Path):
    """The transformer on the CPU, through the one ``model.pt`` reader (``StarFM.load``: a file
    that is not a starfm model is a one-line error naming it)."""
    from starfm.inference import StarFM

    return StarFM.load(path, device="cpu")


def read_truth(ds: Dataset) -> dict[str, np.ndarray] | None:
    """The truth group's label columns aligned with the dataset rows, or None if absent."""
    import h5py
    with h5py.File(ds.path, "r") as f:
        if "truth" not in f:
            return None
        names = list(f["truth"].keys())
    cols = [c for c in TRUTH_COLUMNS.values() if c in names]
    truth = read_table(ds.path, cols + (["source_id"] if "source_id" in names else []),
                       group="truth")
    n = len(ds.source_id)
    if any(len(v) != n for v in truth.values()):
        raise StarfmInputError(f"{ds.path}: group 'truth' has a different number of rows than "
                               f"the dataset ({n})")
    if "source_id" in truth and not np.array_equal(truth["source_id"], ds.source_id):
        raise StarfmInputError(f"{ds.path}: truth/source_id is not aligned with source_id")
    return {label: np.asarray(truth[col], float) for label, col in TRUTH_COLUMNS.items()
            if col in truth}


def setting_inputs(setting: InputSetting, values: np.ndarray, seed: int):
    """(inputs, values) the transformer gets in ``setting``: the fixed ``inputs`` list, or for a
    ``random_subset`` setting a seeded random ``k`` of each star's present pool tokens (the others
    set absent in a copy of ``values``) in a seeded random order of the pool."""
    inputs = list(setting.inputs)
    if setting.random_subset is None:
        return inputs, values
    idx = np.asarray(tokens.index(inputs))
    keep, order = random_subset_mask(np.isfinite(values[:, idx]), setting.random_subset, seed)
    pool = values[:, idx]
    pool[~keep] = np.nan
    masked = values.copy()
    masked[:, idx] = pool
    return [inputs[i] for i in order], masked


def transformer_predictions(model, values: np.ndarray, errors: np.ndarray, inputs: list[str],
                            batch_size: int = 4096) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{label: (mean, sigma)} in token space (ln_age for age) from the given inputs."""
    outputs = [TARGET_TOKENS[label] for label in tokens.TARGETS]
    mean, std = model.predict(values, errors, inputs=inputs, outputs=outputs,
                              batch_size=batch_size)
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    if mean.shape != (len(values), len(outputs)) or std.shape != mean.shape:
        raise RuntimeError(f"model.predict returned shapes {mean.shape}/{std.shape}, expected "
                           f"({len(values)}, {len(outputs)})")
    return {label: (mean[:, i], std[:, i]) for i, label in enumerate(tokens.TARGETS)}


def _score(tf: dict, xgb_pred: dict | None, labels: dict, truth: dict | None, source_id):
    """Metrics ({"transformer", ["xgboost"], ["truth"]}) and predictions columns of one setting.

    ``labels``: {label: (label, label_err) in token space}; ``truth``: {label: natural} or None.
    """
    sec: dict = {"transformer": {}}
    if xgb_pred is not None:
        sec["xgboost"] = {}
    if truth is not None:
        sec["truth"] = {k: {} for k in sec}
    columns: dict[str, np.ndarray] = {"source_id": source_id}
    for label in tokens.TARGETS:
        token = TARGET_TOKENS[label]
        lab_tok, lab_err_tok = labels[label]
        mean_tok, sigma_tok = tf[label]
        lab = _to_natural(label, lab_tok)
        tf_nat = _to_natural(label, mean_tok)
        # delta method for age: d exp(mu) = exp(mu) d mu
        sigma_nat = tf_nat * sigma_tok if token == "ln_age" else sigma_tok
        lab_err = lab * lab_err_tok if token == "ln_age" else lab_err_tok
        z = zscore(mean_tok, sigma_tok, lab_tok, lab_err_tok)
        z[~np.isfinite(lab_tok)] = np.nan
        scored = np.isfinite(z)
        sec["transformer"][label] = {
            **residual_metrics(tf_nat, lab), **_zscore_stats(z),
            "mean_sigma": float(np.mean(sigma_nat[scored])) if scored.any() else float("nan"),
            "unit": UNITS[label]}
        columns.update({f"label_{label}": lab, f"label_{label}_err": lab_err,
                        f"transformer_{label}": tf_nat, f"transformer_{label}_sigma": sigma_nat,
                        f"transformer_{label}_zscore": z})
        if xgb_pred is not None:
            sec["xgboost"][label] = {**residual_metrics(xgb_pred[label], lab),
                                     "unit": UNITS[label]}
            columns[f"xgboost_{label}"] = xgb_pred[label]
        if truth is not None and label in truth:
            true = truth[label]
            with np.errstate(invalid="ignore", divide="ignore"):
                true_tok = np.log(true) if token == "ln_age" else true
            zt = zscore(mean_tok, sigma_tok, true_tok, 0.0)
            sec["truth"]["transformer"][label] = {**residual_metrics(tf_nat, true),
                                                  **_zscore_stats(zt), "unit": UNITS[label]}
            if xgb_pred is not None:
                sec["truth"]["xgboost"][label] = {**residual_metrics(xgb_pred[label], true),
                                                  "unit": UNITS[label]}
            columns[f"truth_{label}"] = true
    return sec, columns


def _sigma_ratio(sigma: np.ndarray, sigma_ref: np.ndarray) -> float:
    both = np.isfinite(sigma) & np.isfinite(sigma_ref)
    if not both.any():
        return float("nan")
    return float(np.mean(sigma[both]) / np.mean(sigma_ref[both]))


def evaluate(dataset, model, baseline, out, predictions, batch_size: int = 4096,
             seed: int = 11) -> dict:
    """Score both models per input setting on the test split of ``dataset``; write ``out``
    (JSON) and ``predictions`` (HDF5). ``seed``: the ``random64`` setting's draws.

    ``model`` / ``baseline``: paths, or already-loaded objects (a ``StarFM``-like object with
    ``vocabulary`` and ``predict``; a {setting: :class:`starfm.baseline.Baseline`} dict as
    :func:`starfm.baseline.load_baselines` returns). Returns the metrics.
    """
    ds = read_dataset(dataset)
    test = ds.is_test
    if not test.any():
        raise StarfmInputError(f"{ds.path}: the test split is empty (no row has is_test)")
    model_source = model if isinstance(model, (str, Path)) else "the model"
    if isinstance(model, (str, Path)):
        model = load_model(model)
    from starfm.inference import check_vocabulary
    check_vocabulary(model, model_source)
    baseline_source = baseline if isinstance(baseline, (str, Path)) else "the baseline"
    if isinstance(baseline, (str, Path)):
        baseline = load_baselines(baseline)
    context_max = int(getattr(model, "context_max", CONTEXT_MAX))
    for name, setting in SETTINGS.items():
        need = setting.random_subset or len(setting.inputs)
        if need > context_max:
            raise StarfmInputError(f"{model_source}: its context holds {context_max} tokens, "
                                   f"input setting '{name}' needs {need}")
        if not setting.xgboost:
            continue
        if name not in baseline:
            raise StarfmInputError(f"{baseline_source}: has no XGBoost for input setting "
                                   f"'{name}' (it has {sorted(baseline)}); rerun the baseline "
                                   f"stage")
        assert isinstance(baseline[name], Baseline)
        if list(baseline[name].inputs) != list(setting.inputs):
            raise StarfmInputError(f"{baseline_source}: the XGBoost of setting '{name}' was "
                                   f"trained on other inputs than starfm.input_settings "
                                   f"defines; rerun the baseline stage")

    values, errors = ds.values[test], ds.errors[test]
    labels = {label: (ds.column(TARGET_TOKENS[label])[test].astype(float),
                      ds.error(TARGET_TOKENS[label])[test].astype(float))
              for label in tokens.TARGETS}
    truth = read_truth(ds)
    if truth is not None:
        truth = {k: v[test] for k, v in truth.items()}
    source_id = ds.source_id[test]

    settings: dict = {}
    groups: dict[str, dict[str, np.ndarray]] = {}
    sigma_tok: dict[str, dict[str, np.ndarray]] = {}
    for name, setting in SETTINGS.items():
        inputs, vals = setting_inputs(setting, values, seed)
        log.info("setting %-34s %3d input tokens%s", name, len(inputs),
                 f" (a random {setting.random_subset} per star)" if setting.random_subset
                 else "")
        tf = transformer_predictions(model, vals, errors, inputs, batch_size)
        xgb_pred = baseline[name].predict(values) if setting.xgboost else None
        sec, columns = _score(tf, xgb_pred, labels, truth, source_id)
        entry = {"inputs": list(setting.inputs), "panel": setting.panel,
                 "description": setting.description, "xgboost_trained": setting.xgboost}
        if setting.random_subset is not None:
            entry.update(random_subset=setting.random_subset, seed=seed)
        settings[name] = {**entry, **sec}
        groups[f"settings/{name}"] = columns
        sigma_tok[name] = {label: tf[label][1] for label in tokens.TARGETS}
    for name in settings:
        if name != HEADLINE:
            for label in tokens.TARGETS:
                settings[name]["transformer"][label]["sigma_ratio_vs_standard"] = _sigma_ratio(
                    sigma_tok[name][label], sigma_tok[HEADLINE][label])

    head = settings[HEADLINE]
    metrics: dict = {"transformer": copy.deepcopy(head["transformer"]),
                     "xgboost": copy.deepcopy(head["xgboost"])}
    if "truth" in head:
        metrics["truth"] = copy.deepcopy(head["truth"])
    metrics["n_test"] = int(test.sum())
    metrics["headline_setting"] = HEADLINE
    metrics["transformer_inputs"] = list(head["inputs"])
    metrics["xgboost_inputs"] = list(baseline[HEADLINE].inputs)
    metrics["settings"] = settings
    metrics["notes"] = ("top-level transformer/xgboost/truth = settings.standard (identical "
                        "inputs for both models); scatter = 1.4826*MAD and bias = median of "
                        "prediction - label, natural units (age in Gyr); zscore_std = plain std, "
                        "zscore_robust_std = 1.4826*MAD of (mean - label)/sqrt(sigma_pred^2 + "
                        "sigma_label^2) in token space (ln_age for age); mean_sigma in natural "
                        "units; sigma_ratio_vs_standard = mean sigma / mean sigma of standard in "
                        "token space over the stars both predicted")

    root = dict(groups[f"settings/{HEADLINE}"])
    write_table(predictions, {k: np.asarray(v) for k, v in root.items()},
                attrs={"units": UNITS, "headline_setting": HEADLINE,
                       "transformer_inputs": list(head["inputs"]),
                       "xgboost_inputs": list(baseline[HEADLINE].inputs),
                       "settings": {n: list(SETTINGS[n].inputs) for n in SETTINGS},
                       "dataset": str(ds.path)},
                groups={g: {k: np.asarray(v) for k, v in cols.items()}
                        for g, cols in groups.items()})
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(json_safe(metrics), indent=2) + "\n")
    log.info("metrics on the test split (headline: setting '%s')\n%s", HEADLINE,
             format_table(metrics))
    return metrics


FORMATS = tokens.TARGET_FORMATS


def _f(x, fmt):
    return "nan" if x is None or not np.isfinite(x) else format(x, fmt)


def format_table(metrics: dict) -> str:
    """A readable text table of the metrics (logged by :func:`evaluate`): the headline
    (standard) setting in full, then every setting's scatter, z-score spread and sigma ratio."""
    lines = []
    sections = [("vs observed labels", metrics)]
    if "truth" in metrics:
        sections.append(("vs truth", metrics["truth"]))
    headline = metrics.get("headline_setting", HEADLINE)
    for title, sec in sections:
        lines.append(f"{title} (setting '{headline}'):")
        lines.append(f"  {'label':<6}{'unit':<6}| {'TF scatter':>11}{'TF bias':>10}{'z std':>7}"
                     f"{'z rstd':>7}{'n':>8} | {'XGB scatter':>12}{'XGB bias':>10}{'n':>8}")
        for label in tokens.TARGETS:
            t, x = sec["transformer"].get(label), sec["xgboost"].get(label)
            if t is None:
                continue
            fm = FORMATS[label]
            lines.append(f"  {label:<6}{UNITS[label]:<6}| {_f(t['scatter'], fm):>11}"
                         f"{_f(t['bias'], fm):>10}{_f(t['zscore_std'], '.2f'):>7}"
                         f"{_f(t['zscore_robust_std'], '.2f'):>7}{t['n']:>8} | "
                         f"{_f(x['scatter'], fm):>12}{_f(x['bias'], fm):>10}{x['n']:>8}")
    if "settings" in metrics:
        lines.append(format_settings_table(metrics["settings"]))
    return "\n".join(lines)


def format_settings_table(settings: dict) -> str:
    """Per setting and label: scatter transformer / XGBoost (same inputs; '-' = no XGBoost),
    vs the catalogue labels and, where known, vs truth; then z-score std and sigma ratio."""
    w, c = 40, 21
    head = "".join(f"{label + ' ' + UNITS[label]:>{c}}" for label in tokens.TARGETS)
    lines = []
    blocks = [("scatter vs catalogue labels, transformer / XGBoost on the same inputs", None)]
    if any("truth" in e for e in settings.values()):
        blocks.append(("scatter vs truth, transformer / XGBoost", "truth"))
    for title, key in blocks:
        lines.append(f"settings: {title}:")
        lines.append(f"  {'setting (n inputs)':<{w}}{head}")
        for name, e in settings.items():
            sec = e.get(key, {}) if key else e
            if "transformer" not in sec:
                continue
            cells = []
            for label in tokens.TARGETS:
                t = sec["transformer"].get(label, {}).get("scatter")
                x = sec.get("xgboost", {}).get(label, {}).get("scatter")
                xs = _f(x, FORMATS[label]) if "xgboost" in sec else "-"
                cells.append(f"{_f(t, FORMATS[label]) + ' / ' + xs:>{c}}")
            size = (f"{e['random_subset']} of {len(e['inputs'])}" if "random_subset" in e
                    else str(len(e["inputs"])))
            lines.append(f"  {name + ' (' + size + ')':<{w}}{''.join(cells)}")
    lines.append("settings: transformer z-score std (robust std), mean sigma / standard's, "
                 "n stars scored:")
    lines.append(f"  {'setting':<{w}}{head}")
    for name, e in settings.items():
        cells = []
        for label in tokens.TARGETS:
            t = e["transformer"][label]
            ratio = t.get("sigma_ratio_vs_standard")
            cell = f"{_f(t['zscore_std'], '.2f')}({_f(t['zscore_robust_std'], '.2f')})"
            cell += f" x{_f(ratio, '.2f')}" if ratio is not None else ""
            cells.append(f"{cell:>{c}}")
        n = e["transformer"]["teff"]["n"]
        lines.append(f"  {name + ' n=' + str(n):<{w}}{''.join(cells)}")
    return "\n".join(lines)


@dataclass(frozen=True)
class EvaluateSettings:
    """config.yaml ``evaluate:`` (defaults = the schema's)."""

    SECTION = "evaluate"
    seed: int = 11      # seed of the random64 setting's per-star draws


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("evaluate", "Score the transformer and the XGBoost baseline on the "
                          "test split of dataset.h5 for each input setting of "
                          "starfm.input_settings (standard = bp0-29, rp0-29, J-H, J-K, BP-RP "
                          "for both models, the headline; + pseudo-luminosity; + ln E(B-V); and "
                          "the transformer's robustness settings of Figs. 4-5 c-f): scatter "
                          "(1.4826 MAD), bias (median) and z-score spread per label, also "
                          "against truth where the dataset has it.")
    parser.add_argument("--dataset", required=True, help="dataset.h5 from the assemble stage")
    parser.add_argument("--model", required=True, help="model.pt from the train stage")
    parser.add_argument("--baseline", required=True, help="xgboost.json from the baseline stage")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--predictions", required=True,
                        help="HDF5 table of per-star predictions to write (for the figures)")
    parser.add_argument("--batch-size", type=int, default=4096, help="stars per model call")
    add_settings_argument(parser, EvaluateSettings)
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    s = parse_settings(EvaluateSettings, args.settings)
    evaluate(args.dataset, args.model, args.baseline, args.out, args.predictions,
             args.batch_size, s.seed)
    return 0
