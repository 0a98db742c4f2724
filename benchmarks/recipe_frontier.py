"""The CPU-recipe frontier of issue 10: train recipe variants on one default-run dataset and
measure the four claims of the shipped model on each.

(a) transformer vs XGBoost robust scatter on mass and age, input setting ``standard``
    (metrics.json ``settings.standard``, both models on identical inputs);
(b) z-score std of every label on ``standard`` and on ``first5`` (bound 0.8-1.25);
(c) extinction law recovery: median |dA/A| over 400-900 nm (``starfm.extinction_curve``);
(d) BP <-> RP inpainting: median over test stars of the RMSE (coefficient / F_G) of the
    predicted band against a trivial predictor (the train split's median coefficients).

Usage (dataset = a default run's results/dataset.h5, baseline = its xgboost.json)::

    python benchmarks/recipe_frontier.py --dataset D --baseline B --workdir W \
        --recipe NAME '{"spectra_context_fraction": 0.5}'       # train + measure one variant
    python benchmarks/recipe_frontier.py --dataset D --baseline B --workdir W \
        --measure NAME path/to/model.pt                         # measure an existing model
    python benchmarks/recipe_frontier.py --workdir W           # print the table of W/*.json

A variant is ``recipes.cpu`` of config.yaml with the given overrides. Training uses one torch
thread (bit-reproducible on CPU). Each result goes to ``W/<NAME>.json``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from starfm import extinction_curve as ec  # noqa: E402
from starfm import tokens  # noqa: E402
from starfm.dataset import read_dataset  # noqa: E402
from starfm.evaluate import evaluate  # noqa: E402
from starfm.inference import StarFM  # noqa: E402
from starfm.train import TrainConfig, train  # noqa: E402

LABELS = ["mass", "age", "teff", "logg", "m_h"]
LAW_WINDOW = (400.0, 900.0)


def cpu_recipe(overrides: dict) -> TrainConfig:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    return TrainConfig.from_config(config, recipe="cpu", threads=1, **overrides)


def inpainting_scores(ds, model, max_stars: int = 2000, seed: int = 0) -> dict:
    """Median per-star RMSE of the inpainted band / that of the train-median predictor."""
    test = np.flatnonzero(ds.is_test)
    bp, rp = tokens.index(tokens.XP_BP), tokens.index(tokens.XP_RP)
    both = np.isfinite(ds.values[test][:, bp[0]]) & np.isfinite(ds.values[test][:, rp[0]])
    rows = test[both]
    rows = np.sort(np.random.default_rng(seed).permutation(rows)[:max_stars])
    values, errors = ds.values[rows], ds.errors[rows]
    out = {}
    for task, src, dst in (("bp_to_rp", tokens.XP_BP, tokens.XP_RP),
                           ("rp_to_bp", tokens.XP_RP, tokens.XP_BP)):
        mean, _ = model.predict(values, errors, inputs=src, outputs=dst)
        obs = values[:, tokens.index(dst)]
        trivial = ds.token_median[tokens.index(dst)][None, :]
        with np.errstate(invalid="ignore"):
            rmse = np.sqrt(np.nanmean((np.asarray(mean) - obs) ** 2, axis=1))
            rmse0 = np.sqrt(np.nanmean((trivial - obs) ** 2, axis=1))
        out[task] = float(np.nanmedian(rmse / rmse0))
    return out


def sigma_checks(ds, model, metrics: dict) -> dict:
    """tests/test_science.py's two uncertainty checks: predicted sigma without the XP spectra
    (colours, pseudo-luminosity, ln E(B-V) only) over sigma with the 63 standard+L+E inputs
    (median, test split), and the high_order setting's sigma ratio vs standard."""
    from starfm.input_settings import SETTINGS
    values = ds.values[ds.is_test]
    outputs = ["teff", "logg", "m_h", "mass", "ln_age"]
    _, full = model.predict(values, inputs=list(SETTINGS["standard+pseudo_luminosity+ln_ebv"].inputs),
                            outputs=outputs)
    _, few = model.predict(values, inputs=["bp_rp", "j_h", "j_k", "pseudo_luminosity", "ln_ebv"],
                           outputs=outputs)
    ok = np.all(np.isfinite(full) & np.isfinite(few), axis=1)
    ratio = np.median(few[ok], axis=0) / np.median(full[ok], axis=0)
    high = metrics["settings"]["high_order"]["transformer"]
    return {"no_spectra_sigma_ratio": dict(zip(outputs, map(float, ratio))),
            "high_order_sigma_ratio": {lab: high[lab]["sigma_ratio_vs_standard"] for lab in LABELS}}


def measure(name: str, model_path: Path, dataset: Path, baseline: Path, workdir: Path,
            recipe: dict | None = None, train_seconds: float | None = None) -> dict:
    metrics = evaluate(dataset, model_path, baseline, workdir / f"{name}.metrics.json",
                       workdir / f"{name}.predictions.h5")
    s = metrics["settings"]
    ds = read_dataset(dataset)
    model = StarFM.load(model_path)
    curve = ec.recover_extinction_curve(model, ds.attrs["truth_attrs"])
    law = ec.curve_agreement(curve.median, curve.injected, curve.wavelength_nm, window=LAW_WINDOW)
    row = {"name": name, "recipe": recipe, "train_seconds": train_seconds,
           "scatter": {lab: {"transformer": s["standard"]["transformer"][lab]["scatter"],
                             "xgboost": s["standard"]["xgboost"][lab]["scatter"]}
                       for lab in LABELS},
           "zscore_std": {st: {lab: s[st]["transformer"][lab]["zscore_std"] for lab in LABELS}
                          for st in ("standard", "first5")},
           "law_median_abs_rel_error": law,
           "inpainting_rmse_ratio": inpainting_scores(ds, model),
           **sigma_checks(ds, model, metrics)}
    (workdir / f"{name}.json").write_text(json.dumps(row, indent=1))
    return row


def claims(row: dict) -> dict:
    sc = row["scatter"]
    a = all(sc[lab]["transformer"] <= 1.03 * sc[lab]["xgboost"] for lab in ("mass", "age"))  # tests/test_science.py MATCH_TOLERANCE
    b = all(0.8 <= z <= 1.25 for st in row["zscore_std"].values() for z in st.values())
    c = row["law_median_abs_rel_error"] <= 0.15
    d = all(v < 0.5 for v in row["inpainting_rmse_ratio"].values())
    return {"a": a, "b": b, "c": c, "d": d}


def sigma_ok(row: dict) -> str:
    """The science tests' sigma checks: no spectra -> sigma x > 1.2 (Teff, logg, [M/H]) and
    > 1.05 (mass, age); high_order -> sigma ratio > 1 for every label."""
    if "no_spectra_sigma_ratio" not in row:
        return "?"
    r, h = row["no_spectra_sigma_ratio"], row["high_order_sigma_ratio"]
    worst = min(r["teff"] / 1.2, r["logg"] / 1.2, r["m_h"] / 1.2, r["mass"] / 1.05, r["ln_age"] / 1.05)
    return (f"{'y' if worst > 1 else 'n'} (logg x{r['logg']:.2f}, age x{r['ln_age']:.2f}); "
            f"{'y' if min(h.values()) > 1 else 'n'} (min x{min(h.values()):.2f})")


def table(workdir: Path) -> str:
    rows = [json.loads(p.read_text()) for p in sorted(workdir.glob("*.json"))
            if not p.name.endswith(".metrics.json")]
    head = ("| recipe | mass TF/XGB | age TF/XGB | z std standard (min-max) | z std first5 (min-max)"
            " | law |dA/A| | inpaint RP<-BP, BP<-RP | train s | a b c d | sigma: no spectra; high_order |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        sc, z = r["scatter"], r["zscore_std"]
        ok = claims(r)
        zs = {k: f"{min(v.values()):.2f}-{max(v.values()):.2f}" for k, v in z.items()}
        worst5 = max(z["first5"], key=lambda k: abs(np.log(z["first5"][k])))
        lines.append(
            f"| {r['name']} | {sc['mass']['transformer']:.3f}/{sc['mass']['xgboost']:.3f} | "
            f"{sc['age']['transformer']:.2f}/{sc['age']['xgboost']:.2f} | {zs['standard']} | "
            f"{zs['first5']} ({worst5}) | {r['law_median_abs_rel_error']:.3f} | "
            f"{r['inpainting_rmse_ratio']['bp_to_rp']:.2f}, {r['inpainting_rmse_ratio']['rp_to_bp']:.2f} | "
            f"{r['train_seconds'] or 0:.0f} | "
            + " ".join("y" if ok[k] else "n" for k in "abcd") + f" | {sigma_ok(r)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", type=Path)
    p.add_argument("--baseline", type=Path)
    p.add_argument("--workdir", type=Path, required=True)
    p.add_argument("--recipe", nargs=2, metavar=("NAME", "JSON"))
    p.add_argument("--measure", nargs=2, metavar=("NAME", "MODEL"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.recipe:
        name, overrides = args.recipe[0], json.loads(args.recipe[1])
        cfg = cpu_recipe(overrides)
        out = args.workdir / f"{name}.pt"
        t0 = time.perf_counter()
        train(args.dataset, out, args.workdir / f"{name}.log.csv",
              checkpoint=args.workdir / f"{name}.ckpt", config=cfg, progress=False)
        measure(name, out, args.dataset, args.baseline, args.workdir, overrides,
                time.perf_counter() - t0)
    elif args.measure:
        name, path = args.measure[0], Path(args.measure[1])
        old = args.workdir / f"{name}.json"
        if old.exists() and (args.workdir / f"{name}.metrics.json").exists():  # add the sigma checks
            row = json.loads(old.read_text())
            row.update(sigma_checks(read_dataset(args.dataset), StarFM.load(path),
                                    json.loads((args.workdir / f"{name}.metrics.json").read_text())))
            old.write_text(json.dumps(row, indent=1))
        else:
            measure(name, path, args.dataset, args.baseline, args.workdir)
    print(table(args.workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
