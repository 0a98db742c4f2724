"""Learning curve: the transformer's scatter against training compute, XGBoost as the reference.

Trains the shipped recipe on a finished run's ``dataset.h5`` at k times the default training
compute (k x the recipe's epochs, same data, same seed; k = 1 is the run's own model and is
reused when it exists), scores each model with the evaluate stage against the run's own XGBoost
baseline (identical standard inputs), and writes ``learning_curve.json`` and
``learning_curve.png`` (scatter of Teff, logg, [M/H] and age against compute, XGBoost as a
horizontal line). From a power law fitted to the points it projects the compute at which the
transformer would meet XGBoost, in multiples of the default training, and converts that to GPU
hours of the paper recipe under the assumptions printed with it.

    python benchmarks/learning_curve.py --results results_library --multipliers 1 4 16

Each multiplier k trains for k x (the default training's wall time): 16 x on 2 CPU cores is
about an hour; run it in the background (``nohup ... &``). Finished points are kept in
``<results>/learning_curve/k<k>/`` and not retrained.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LABELS = ("teff", "logg", "m_h", "age")
UNITS = {"teff": "K", "logg": "dex", "m_h": "dex", "age": "Gyr"}

# Assumptions of the GPU-hour conversion (printed with the result):
# - compute scales with epochs x stars x FLOPs per star, and FLOPs per star with the model's
#   parameters at fixed context length: the paper model has PAPER_OVER_SMALL_FLOPS times the
#   small model's (8.5 M vs 0.199 M parameters, README "Training recipes");
# - the paper recipe reaches the same scatter as the small model at equal FLOPs (a bigger model
#   is usually more sample-efficient, so this bounds the compute from above);
# - the GPU anchor is measured, not ours: Leung & Bovy (2024, appendix) trained the paper recipe
#   (4,096 epochs on ~4x10^5 stars) in ~22.5 h on one RTX 4070 Ti with mixed precision.
PAPER_OVER_SMALL_FLOPS = 8.5e6 / 1.99e5
PAPER_GPU_HOURS = 22.5
PAPER_STAR_EPOCHS = 4e5 * 4096


def _run(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"learning_curve: {' '.join(cmd[:4])} failed:\n{out.stderr[-3000:]}")


def point(results: Path, k: int, epochs: int, seed_settings: dict) -> dict:
    """Train (unless done) and evaluate the model at k x the default epochs."""
    where = results / "learning_curve" / f"k{k}"
    where.mkdir(parents=True, exist_ok=True)
    model = results / "model" / "model.pt" if k == 1 else where / "model.pt"
    metrics = where / "metrics.json"
    seconds = None
    if not model.exists():
        t0 = time.perf_counter()
        settings = {**seed_settings, "epochs": epochs * k}
        _run([sys.executable, "-m", "starfm", "train", "--dataset", str(results / "dataset.h5"),
              "--loss-log", str(where / "training_log.csv"), "--out", str(model), "--no-progress",
              "--checkpoint", str(where / "checkpoint.pt"), "--settings", json.dumps(settings)])
        seconds = time.perf_counter() - t0
    if not metrics.exists():
        _run([sys.executable, "-m", "starfm", "evaluate", "--dataset", str(results / "dataset.h5"),
              "--model", str(model), "--baseline", str(results / "baseline" / "xgboost.json"),
              "--out", str(metrics), "--predictions", str(where / "predictions.h5")])
    m = json.loads(metrics.read_text())
    row = {"k": k, "epochs": epochs * k, "train_seconds": seconds}
    for label in LABELS:
        if label in m["transformer"]:
            row[label] = m["transformer"][label]["scatter"]
            row[f"xgboost_{label}"] = m["xgboost"][label]["scatter"]
    return row


def meet_compute(ks: np.ndarray, scatter: np.ndarray, target: float) -> float | None:
    """k at which a power law scatter = a k^-b through the points reaches ``target`` (None if the
    fitted curve does not fall, or the target is already met at k = 1 -> 1)."""
    if scatter[0] <= target:
        return 1.0
    b, log_a = np.polyfit(np.log(ks), np.log(scatter), 1)
    if b >= 0:
        return None
    return float(np.exp((np.log(target) - log_a) / b))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, required=True, help="a finished run's results/ (e.g. mode: library)")
    p.add_argument("--multipliers", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--epochs", type=int, default=20, help="the default training's epochs (recipes.cpu)")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--n-stars-paper", type=float, default=4e5, help="training stars of the paper's sample")
    args = p.parse_args(argv)
    rows = [point(args.results, k, args.epochs, {"seed": args.seed}) for k in sorted(args.multipliers)]
    ks = np.array([r["k"] for r in rows], float)
    train_log = args.results / "model" / "training_log.csv"
    base_seconds = None
    if train_log.exists():
        import csv
        with open(train_log) as f:
            base_seconds = sum(float(r["seconds"]) for r in csv.DictReader(f))
    n_train = None
    try:
        import h5py
        with h5py.File(args.results / "dataset.h5", "r") as f:
            n_train = int((~f["is_test"][:]).sum())
    except Exception:
        pass
    out = {"points": rows, "base_training_seconds_cpu": base_seconds, "n_train": n_train, "meet": {},
           "assumptions": {"paper_over_small_flops": PAPER_OVER_SMALL_FLOPS,
                           "paper_gpu_hours_leung_bovy_rtx4070ti": PAPER_GPU_HOURS,
                           "paper_star_epochs": PAPER_STAR_EPOCHS, "n_stars_paper": args.n_stars_paper}}
    print(f"{'k':>4} {'epochs':>7}" + "".join(f"{lab:>10}" for lab in LABELS))
    for r in rows:
        print(f"{r['k']:>4} {r['epochs']:>7}" + "".join(f"{r.get(lab, np.nan):>10.4g}" for lab in LABELS))
    print(f"{'XGB':>12}" + "".join(f"{rows[0].get('xgboost_' + lab, np.nan):>10.4g}" for lab in LABELS))
    for label in LABELS:
        if label not in rows[0]:
            continue
        k_meet = meet_compute(ks, np.array([r[label] for r in rows]), rows[0][f"xgboost_{label}"])
        entry = {"k": k_meet}
        if k_meet is not None and n_train:
            star_epochs = k_meet * args.epochs * n_train
            # the same FLOPs as paper-recipe star-epochs, timed by Leung & Bovy's GPU run
            paper_star_epochs = star_epochs / PAPER_OVER_SMALL_FLOPS
            gpu_hours = paper_star_epochs / PAPER_STAR_EPOCHS * PAPER_GPU_HOURS
            entry.update(star_epochs_small=star_epochs, gpu_hours_paper_recipe=gpu_hours,
                         paper_epochs_on_real_sample=paper_star_epochs / args.n_stars_paper)
        out["meet"][label] = entry
        print(f"{label}: transformer meets XGBoost at k = {k_meet if k_meet is None else round(k_meet, 1)}"
              + (f" (~{entry['gpu_hours_paper_recipe'] * 60:.2g} GPU min of the paper recipe, assumptions in "
                 f"the module)" if "gpu_hours_paper_recipe" in entry else ""))
    (args.results / "learning_curve").mkdir(exist_ok=True)
    (args.results / "learning_curve" / "learning_curve.json").write_text(json.dumps(out, indent=1))
    _plot(rows, args.results / "learning_curve" / "learning_curve.png", base_seconds)
    return 0


def _plot(rows: list[dict], path: Path, base_seconds: float | None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LABELS), figsize=(4 * len(LABELS), 3.4), constrained_layout=True)
    ks = [r["k"] for r in rows]
    for ax, label in zip(axes, LABELS):
        if label not in rows[0]:
            ax.set_visible(False)
            continue
        ax.plot(ks, [r[label] for r in rows], "o-", color="C0", label="transformer (recipes.cpu)")
        ax.axhline(rows[0][f"xgboost_{label}"], color="C3", ls="--", label="XGBoost (same inputs)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [f"{k}x" for k in ks])
        ax.set_xlabel("training compute (x default)" + (f"\n1x = {base_seconds / 60:.1f} CPU min" if base_seconds else ""))
        ax.set_ylabel(f"scatter [{UNITS[label]}]")
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
