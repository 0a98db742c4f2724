"""The science tests' quantities over several finished default runs (seeds, CPU kernels).

Training results differ between CPU types and seeds; a science test must assert only what
holds across them with margin (tests/test_science.py, tests/test_extinction_curve.py). This
script prints, for each run directory given (a workflow directory holding ``results/``), the
numbers those tests bound, and their range over the runs, so a bound can be checked against the
measured spread:

    python benchmarks/science_spread.py runs/avx2-seed3 runs/default-seed3 ... [--json out.json]

Make the runs with the shipped config and, e.g., ``--config train='{seed: 4, ...}'`` (or a
``--configfile`` with ``train: {seed: 4}``) and ``ATEN_CPU_CAPABILITY=default`` in the
environment to emulate a CPU without AVX2 kernels in torch (README "Reproducibility").
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

LABELS = ("mass", "age", "teff", "logg", "m_h")


def _model_checks(results: Path) -> dict:
    """Inpainting (Fig. 12 claim) and the spectra-removal sigma growth, on the run's model."""
    import h5py

    from starfm import tokens
    from starfm.inference import StarFM
    from starfm.input_settings import SETTINGS

    with h5py.File(results / "dataset.h5", "r") as f:
        is_test = f["is_test"][:]
        values = f["values"][:][is_test]
        errors = f["errors"][:][is_test]
        median = np.asarray(f.attrs["token_median"], float)
    model = StarFM.load(results / "model" / "model.pt")
    out = {}
    bp, rp = tokens.index(tokens.XP_BP), tokens.index(tokens.XP_RP)
    both = np.flatnonzero(np.isfinite(values[:, bp[0]]) & np.isfinite(values[:, rp[0]]))[:2000]
    for name, src, dst in (("inpaint_rp_from_bp", tokens.XP_BP, tokens.XP_RP),
                           ("inpaint_bp_from_rp", tokens.XP_RP, tokens.XP_BP)):
        mean, _ = model.predict(values[both], errors[both], inputs=src, outputs=dst)
        obs = values[both][:, tokens.index(dst)]
        with np.errstate(invalid="ignore"):
            rmse = np.sqrt(np.nanmean((mean - obs) ** 2, axis=1))
            trivial = np.sqrt(np.nanmean((median[tokens.index(dst)][None, :] - obs) ** 2, axis=1))
        out[name] = float(np.nanmedian(rmse / trivial))
    outputs = ["teff", "logg", "m_h", "mass", "ln_age"]
    with_l = list(SETTINGS["standard+pseudo_luminosity+ln_ebv"].inputs)
    _, full = model.predict(values, inputs=with_l, outputs=outputs)
    _, few = model.predict(values, inputs=["bp_rp", "j_h", "j_k", "pseudo_luminosity", "ln_ebv"],
                           outputs=outputs)
    ok = np.all(np.isfinite(full) & np.isfinite(few), axis=1)
    ratio = np.median(few[ok], axis=0) / np.median(full[ok], axis=0)
    out.update({f"no_spectra_sigma_x_{k}": float(r) for k, r in zip(outputs, ratio)})
    return out


def quantities(run: Path) -> dict:
    results = run / "results"
    m = json.loads((results / "metrics.json").read_text())
    law = json.loads((results / "evaluation" / "extinction_curve.json").read_text())
    q = {}
    for label in ("mass", "age"):
        q[f"tf_over_xgb_{label}"] = m["transformer"][label]["scatter"] / m["xgboost"][label]["scatter"]
        t = m["truth"]
        q[f"truth_tf_over_xgb_{label}"] = t["transformer"][label]["scatter"] / t["xgboost"][label]["scatter"]
    for setting in ("standard", "first5"):
        z = [m["settings"][setting]["transformer"][k]["zscore_std"] for k in LABELS]
        q[f"zstd_{setting}_min"], q[f"zstd_{setting}_max"] = min(z), max(z)
    high = m["settings"]["high_order"]["transformer"]
    for label in LABELS:
        q[f"high_order_sigma_x_{label}"] = high[label]["sigma_ratio_vs_standard"]
    ident = m["settings"]["high_order+labels"]["transformer"]
    for label in LABELS:
        q[f"identity_over_standard_{label}"] = (ident[label]["scatter"]
                                                / m["settings"]["standard"]["transformer"][label]["scatter"])
    # scatter against the mock's truth as a fraction of the population's spread (recovery test)
    import h5py
    with h5py.File(results / "dataset.h5", "r") as f:
        is_test = f["is_test"][:]
        truth = {k: f["truth"][k][:][is_test] for k in ("mass", "age_gyr", "teff", "logg", "m_h")}
    setting_of = {"logg": "standard+pseudo_luminosity"}
    for label, column in zip(LABELS, ("mass", "age_gyr", "teff", "logg", "m_h")):
        t = truth[column]
        spread = 1.4826 * np.nanmedian(np.abs(t - np.nanmedian(t)))
        setting = setting_of.get(label, "standard")
        q[f"truth_over_spread_{label}"] = m["settings"][setting]["truth"]["transformer"][label]["scatter"] / spread
    q["law_abs"] = law["median_abs_rel_error"]
    q["law_shape"] = law["shape_median_abs_rel_error"]
    for label in LABELS:
        q[f"scatter_tf_{label}"] = m["transformer"][label]["scatter"]
        q[f"scatter_xgb_{label}"] = m["xgboost"][label]["scatter"]
    q.update(_model_checks(results))
    return q


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="workflow directories with results/")
    p.add_argument("--json", type=Path, help="also write every number here")
    args = p.parse_args(argv)
    table = {str(r): quantities(r) for r in args.runs}
    keys = list(next(iter(table.values())))
    names = [Path(r).name for r in table]
    print(f"{'quantity':<28}" + "".join(f"{n[-14:]:>15}" for n in names) + f"{'min':>10}{'max':>10}")
    for k in keys:
        vals = [table[r][k] for r in table]
        print(f"{k:<28}" + "".join(f"{v:>15.4g}" for v in vals) + f"{min(vals):>10.4g}{max(vals):>10.4g}")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
