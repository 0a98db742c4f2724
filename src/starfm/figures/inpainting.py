"""Fig. 12: BP <-> RP inpainting in wavelength (Zhang et al. 2026 §4.3).

For test stars with both bands, the model is asked for the 55 RP coefficients given the 55 BP
ones, and for BP given RP. Each reconstructed spectrum is the GaiaXPy calibrated flux of the
given band's observed coefficients and the other band's predicted ones; the observed spectrum
is that of both observed bands. The error of a task is the fractional RMSE over the predicted
side of the 640 nm split (BP below, RP above): rms(pred - obs) / mean(obs) there. Stars are
picked at the 5-99th percentiles of the mean of the two tasks' errors.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starfm import tokens
from starfm.figures.common import (BP_RP_SPLIT_NM, PERCENTILES, finite_float, plt, subsample,
                                   wavelength_nm, xp_flux)
from starfm.figures.reconstruction import percentile_picks
from starfm.errors import StarfmInputError

TASKS = {"rp_to_bp": (tokens.XP_RP, tokens.XP_BP), "bp_to_rp": (tokens.XP_BP, tokens.XP_RP)}


@dataclass(frozen=True)
class Settings:
    max_stars: int = 2000
    seed: int = 0


def prepare_inpainting(ds, model, max_stars: int = 2000, batch_size: int = 4096,
                       seed: int = 0) -> dict:
    """Per task: observed and inpainted spectra of the picked stars, every star's RMSE."""
    test = np.flatnonzero(ds.is_test)
    bp_i, rp_i = tokens.index(tokens.XP_BP), tokens.index(tokens.XP_RP)
    both = np.isfinite(ds.values[test][:, bp_i[0]]) & np.isfinite(ds.values[test][:, rp_i[0]])
    rows = test[both]
    if rows.size == 0:
        raise StarfmInputError(f"{ds.path}: no test star has both BP and RP coefficients")
    rows = rows[subsample(len(rows), max_stars, seed)]
    values = ds.values[rows].astype(float)
    lam = wavelength_nm()
    bp_obs, rp_obs = values[:, bp_i], values[:, rp_i]
    obs_flux = xp_flux(bp_obs, rp_obs)
    out = {"wavelength": lam, "observed": obs_flux, "source_id": ds.source_id[rows]}
    for task, (src, dst) in TASKS.items():
        mean, _ = model.predict(values, inputs=src, outputs=dst, batch_size=batch_size)
        mean = np.asarray(mean, float)
        dst_obs = values[:, tokens.index(dst)]
        mean = np.where(np.isfinite(dst_obs), mean, np.nan)       # irrelevant coefficients out
        flux = xp_flux(bp_obs, mean) if task == "bp_to_rp" else xp_flux(mean, rp_obs)
        side = lam >= BP_RP_SPLIT_NM if task == "bp_to_rp" else lam < BP_RP_SPLIT_NM
        with np.errstate(invalid="ignore", divide="ignore"):
            rmse = (np.sqrt(np.mean((flux[:, side] - obs_flux[:, side]) ** 2, axis=1))
                    / np.abs(obs_flux[:, side].mean(axis=1)))
        out[task] = {"predicted": flux, "rmse": rmse}
    out["rmse"] = 0.5 * (out["rp_to_bp"]["rmse"] + out["bp_to_rp"]["rmse"])
    out["pick"] = percentile_picks(out["rmse"])
    return out


def plot_inpainting(d: dict):
    pyplot = plt()
    fig = pyplot.figure(figsize=(18, 11), constrained_layout=True)
    outer = fig.add_gridspec(2, 3)
    lam = d["wavelength"]
    for k, (pct, star) in enumerate(zip(PERCENTILES, d["pick"])):
        inner = outer[k // 3, k % 3].subgridspec(2, 1, hspace=0.0)
        for j, (task, title) in enumerate((("rp_to_bp", "BP from RP"), ("bp_to_rp", "RP from BP"))):
            ax = fig.add_subplot(inner[j])
            predicted_side = (lam.min(), BP_RP_SPLIT_NM) if task == "rp_to_bp" else \
                (BP_RP_SPLIT_NM, lam.max())
            given_side = (BP_RP_SPLIT_NM, lam.max()) if task == "rp_to_bp" else \
                (lam.min(), BP_RP_SPLIT_NM)
            ax.axvspan(*predicted_side, color="#dde8ff", lw=0)     # predicted: light blue
            ax.axvspan(*given_side, color="#ffe0e0", lw=0)         # input: light red
            ax.axhline(0, color="k", ls="--", lw=0.7)
            ax.plot(lam, d["observed"][star], color="tab:blue", lw=1.2, label="observed")
            ax.plot(lam, d[task]["predicted"][star], color="tab:red", lw=1.0,
                    label="model (other band predicted)")
            ax.text(0.98, 0.92, f"{title}: RMSE {100 * d[task]['rmse'][star]:.1f} %",
                    transform=ax.transAxes, ha="right", va="top", fontsize=8)
            ax.set_ylabel(r"flux / $F_G$", fontsize=8)
            if j == 0:
                ax.set_title(f"{pct}th percentile (source {d['source_id'][star]})", fontsize=9)
                ax.tick_params(labelbottom=False)
                if k == 0:
                    ax.legend(fontsize=7, loc="center right")
            else:
                ax.set_xlabel(r"$\lambda$ [nm]")
    fig.suptitle("Fig. 12: BP <-> RP inpainting in wavelength (GaiaXPy calibration; light red = "
                 f"given, light blue = predicted; split at {BP_RP_SPLIT_NM:.0f} nm)")
    return fig


def build(inputs, s: Settings):
    d = prepare_inpainting(inputs.ds, inputs.model, s.max_stars, seed=s.seed)
    numbers = {"n_stars": int(np.isfinite(d["rmse"]).sum())}
    for task in TASKS:
        r = d[task]["rmse"]
        r = r[np.isfinite(r)]
        numbers[task] = {"rmse_median": float(np.median(r)), "rmse_p5": float(np.percentile(r, 5)),
                         "rmse_p99": float(np.percentile(r, 99)),
                         "picked": [finite_float(d[task]["rmse"][i]) for i in d["pick"]]}
    return plot_inpainting(d), numbers
