"""Metrics of the transformer and the XGBoost baseline on the test split (SPEC §4).

For each label (mass, age, Teff, logg, [M/H]) and model, on the test-split stars where the label
is present:

- ``scatter`` = 1.4826 * MAD of the residuals (prediction - label) in the label's natural unit
  (mass Msun, age Gyr = exp(ln_age), Teff K, logg and [M/H] dex);
- ``bias`` = median residual, ``n`` = number of stars;
- transformer only: the z-score (mean - label) / sqrt(sigma_pred^2 + sigma_label^2) in token
  space (ln_age for age, where the model's Gaussian lives). ``zscore_std`` is its plain standard
  deviation (what the issue asks for; 1 = calibrated), ``zscore_robust_std`` is 1.4826 * MAD,
  which a few catastrophic outliers cannot inflate.

Transformer inputs (the paper's setting, Zhang et al. 2026 Figs. 4-5): XP coefficients, colours,
pseudo-luminosity and ln E(B-V). The context holds at most 64 tokens, so we pass bp0-28, rp0-28,
BP-RP, J-H, J-K, pseudo_luminosity, ln_ebv = 63 tokens (the first 29 coefficients carry nearly all
XP information; Gaia marks most coefficients beyond ~30-40 irrelevant anyway). The baseline uses
its own inputs (bp0-29, rp0-29, J-H, J-K, BP-RP).

Where ``dataset.h5`` has a ``truth`` group (mock survey) both models are also scored against the
true values (``"truth"`` section; z-score there uses sigma_pred alone).

``predictions.h5`` (one row per test star) holds what the figures need: ``source_id``;
per label ``label_<l>``, ``label_<l>_err``, ``transformer_<l>``, ``transformer_<l>_sigma``,
``transformer_<l>_zscore``, ``xgboost_<l>``, and ``truth_<l>`` where known; natural units
(sigma of age in Gyr by the delta method, exp(mu) * sigma_ln).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from starfm import tokens
from starfm.baseline import TARGET_TOKENS, Baseline, Dataset, load_baseline, read_dataset
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.io import StarfmInputError, atomic_path, read_table, write_table

log = logging.getLogger("starfm.evaluate")

TRANSFORMER_INPUTS = list(tokens.EVALUATION_INPUTS)
assert len(TRANSFORMER_INPUTS) == 63
UNITS = {"mass": "Msun", "age": "Gyr", "teff": "K", "logg": "dex", "m_h": "dex"}
# label -> column of the dataset's truth group (docs/data_products.md, mock/truth.h5)
TRUTH_COLUMNS = {"mass": "mass", "age": "age_gyr", "teff": "teff", "logg": "logg", "m_h": "m_h"}
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
    """Load the transformer via ``starfm.inference.StarFM``; bad files name the path."""
    path = Path(path)
    if not path.exists():
        raise StarfmInputError(f"{path}: file not found")
    from starfm.inference import StarFM
    try:
        model = StarFM.load(path, device="cpu")
    except StarfmInputError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, EOFError) as exc:
        raise StarfmInputError(f"{path}: not a readable starfm model ({exc})") from exc
    return model


def check_vocabulary(model, source) -> None:
    vocab = list(getattr(model, "vocabulary", []))
    if vocab != tokens.VOCABULARY:
        diff = next((i for i, (a, b) in enumerate(zip(vocab, tokens.VOCABULARY)) if a != b),
                    min(len(vocab), len(tokens.VOCABULARY)))
        raise StarfmInputError(f"{source}: the model was trained with a different vocabulary "
                               f"({len(vocab)} tokens, first difference at position {diff}); "
                               f"retrain it on this dataset")


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


def transformer_predictions(model, values: np.ndarray, errors: np.ndarray,
                            batch_size: int = 4096) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{label: (mean, sigma)} in token space (ln_age for age) from the paper's 63 inputs."""
    outputs = [TARGET_TOKENS[label] for label in tokens.TARGETS]
    mean, std = model.predict(values, errors, inputs=TRANSFORMER_INPUTS, outputs=outputs,
                              batch_size=batch_size)
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    if mean.shape != (len(values), len(outputs)) or std.shape != mean.shape:
        raise RuntimeError(f"model.predict returned shapes {mean.shape}/{std.shape}, expected "
                           f"({len(values)}, {len(outputs)})")
    return {label: (mean[:, i], std[:, i]) for i, label in enumerate(tokens.TARGETS)}


def evaluate(dataset, model, baseline, out, predictions, batch_size: int = 4096) -> dict:
    """Score both models on the test split of ``dataset``; write ``out`` (JSON) + ``predictions``.

    ``model`` / ``baseline``: paths, or already-loaded objects (a ``StarFM``-like object with
    ``vocabulary`` and ``predict``; a :class:`starfm.baseline.Baseline`). Returns the metrics.
    """
    ds = read_dataset(dataset)
    test = ds.is_test
    if not test.any():
        raise StarfmInputError(f"{ds.path}: the test split is empty (no row has is_test)")
    model_source = model if isinstance(model, (str, Path)) else "the model"
    if isinstance(model, (str, Path)):
        model = load_model(model)
    check_vocabulary(model, model_source)
    if isinstance(baseline, (str, Path)):
        baseline = load_baseline(baseline)
    assert isinstance(baseline, Baseline)

    values, errors = ds.values[test], ds.errors[test]
    log.info("evaluating %d test stars (transformer inputs: %d tokens)", len(values),
             len(TRANSFORMER_INPUTS))
    tf = transformer_predictions(model, values, errors, batch_size)
    xgb_pred = baseline.predict(values)
    truth = read_truth(ds)
    if truth is not None:
        truth = {k: v[test] for k, v in truth.items()}

    metrics: dict = {"transformer": {}, "xgboost": {}}
    if truth is not None:
        metrics["truth"] = {"transformer": {}, "xgboost": {}}
    columns: dict[str, np.ndarray] = {"source_id": ds.source_id[test]}
    for label in tokens.TARGETS:
        token = TARGET_TOKENS[label]
        lab_tok, lab_err_tok = ds.column(token)[test].astype(float), ds.error(token)[test]
        mean_tok, sigma_tok = tf[label]
        lab = _to_natural(label, lab_tok)
        tf_nat = _to_natural(label, mean_tok)
        # delta method for age: d exp(mu) = exp(mu) d mu
        sigma_nat = tf_nat * sigma_tok if token == "ln_age" else sigma_tok
        lab_err = lab * lab_err_tok if token == "ln_age" else lab_err_tok.astype(float)
        z = zscore(mean_tok, sigma_tok, lab_tok, lab_err_tok)
        z[~np.isfinite(lab_tok)] = np.nan
        metrics["transformer"][label] = {**residual_metrics(tf_nat, lab), **_zscore_stats(z),
                                         "unit": UNITS[label]}
        metrics["xgboost"][label] = {**residual_metrics(xgb_pred[label], lab),
                                     "unit": UNITS[label]}
        columns.update({f"label_{label}": lab, f"label_{label}_err": lab_err,
                        f"transformer_{label}": tf_nat, f"transformer_{label}_sigma": sigma_nat,
                        f"transformer_{label}_zscore": z, f"xgboost_{label}": xgb_pred[label]})
        if truth is not None and label in truth:
            true = truth[label]
            true_tok = np.log(true) if token == "ln_age" else true
            zt = zscore(mean_tok, sigma_tok, true_tok, 0.0)
            metrics["truth"]["transformer"][label] = {**residual_metrics(tf_nat, true),
                                                      **_zscore_stats(zt), "unit": UNITS[label]}
            metrics["truth"]["xgboost"][label] = {**residual_metrics(xgb_pred[label], true),
                                                  "unit": UNITS[label]}
            columns[f"truth_{label}"] = true
    metrics["n_test"] = int(test.sum())
    metrics["transformer_inputs"] = TRANSFORMER_INPUTS
    metrics["xgboost_inputs"] = list(baseline.inputs)
    metrics["notes"] = ("scatter = 1.4826*MAD and bias = median of prediction - label, natural "
                        "units (age in Gyr); zscore_std = plain std, zscore_robust_std = "
                        "1.4826*MAD of (mean - label)/sqrt(sigma_pred^2 + sigma_label^2) in token "
                        "space (ln_age for age)")

    write_table(predictions, {k: np.asarray(v) for k, v in columns.items()},
                attrs={"units": UNITS, "transformer_inputs": TRANSFORMER_INPUTS,
                       "xgboost_inputs": list(baseline.inputs), "dataset": str(ds.path)})
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(_json_safe(metrics), indent=2) + "\n")
    log.info("metrics on the test split\n%s", format_table(metrics))
    return metrics


def _json_safe(obj):
    """NaN/inf -> null so metrics.json stays strict JSON."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def format_table(metrics: dict) -> str:
    """A readable text table of the metrics (logged by :func:`evaluate`)."""
    def f(x, fmt):
        return "nan" if x is None or not np.isfinite(x) else format(x, fmt)

    fmts = {"mass": ".3f", "age": ".3f", "teff": ".1f", "logg": ".3f", "m_h": ".3f"}
    lines = []
    sections = [("vs observed labels", metrics)]
    if "truth" in metrics:
        sections.append(("vs truth", metrics["truth"]))
    for title, sec in sections:
        lines.append(f"{title}:")
        lines.append(f"  {'label':<6}{'unit':<6}| {'TF scatter':>11}{'TF bias':>10}{'z std':>7}"
                     f"{'z rstd':>7}{'n':>8} | {'XGB scatter':>12}{'XGB bias':>10}{'n':>8}")
        for label in tokens.TARGETS:
            t, x = sec["transformer"].get(label), sec["xgboost"].get(label)
            if t is None:
                continue
            fm = fmts[label]
            lines.append(f"  {label:<6}{UNITS[label]:<6}| {f(t['scatter'], fm):>11}"
                         f"{f(t['bias'], fm):>10}{f(t['zscore_std'], '.2f'):>7}"
                         f"{f(t['zscore_robust_std'], '.2f'):>7}{t['n']:>8} | "
                         f"{f(x['scatter'], fm):>12}{f(x['bias'], fm):>10}{x['n']:>8}")
    return "\n".join(lines)


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("evaluate", "Score the transformer (inputs bp0-28, rp0-28, BP-RP, J-H, "
                          "J-K, pseudo-luminosity, ln E(B-V)) and the XGBoost baseline on the "
                          "test split of dataset.h5: scatter (1.4826 MAD), bias (median) and "
                          "z-score spread per label, also against truth where the dataset has it.")
    parser.add_argument("--dataset", required=True, help="dataset.h5 from the assemble stage")
    parser.add_argument("--model", required=True, help="model.pt from the train stage")
    parser.add_argument("--baseline", required=True, help="xgboost.json from the baseline stage")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    parser.add_argument("--predictions", required=True,
                        help="HDF5 table of per-star predictions to write (for the figures)")
    parser.add_argument("--batch-size", type=int, default=4096, help="stars per model call")
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    evaluate(args.dataset, args.model, args.baseline, args.out, args.predictions,
             args.batch_size)
    return 0
