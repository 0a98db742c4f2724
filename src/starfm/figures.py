"""The paper's figures (Zhang et al. 2026 numbering) from dataset.h5, the model and predictions.h5.

Each figure is one ``prepare_*`` function (numbers in, a dict of arrays out; what the tests check)
and one ``plot_*`` function (that dict -> a 150 dpi PNG, matplotlib Agg). :data:`FIGURE_NAMES` is
the list ``workflow/rules/figures.smk`` declares; every name has a caption in
``workflow/report/<name>.rst``.

1  training set: Kiel diagram by [M/H], sky (l, b) by E(B-V), XP relevancy per coefficient, parallax
   and G distributions (train split).
2  mass-age coloured by [M/H] with marginal KDEs (train split).
4  spectra -> parameters: one-to-one panels, XGBoost (top) vs transformer (bottom) for Teff, logg,
   [M/H], mass, age (test split, from predictions.h5), scatter and bias printed.
6  predicted Kiel diagram; E(B-V) from XP + colours vs the dust-map value; spectrophotometric
   distance (pseudo-luminosity predicted from XP, colours, ln E(B-V)) vs Gaia 1/parallax.
12 BP <-> RP inpainting: RP coefficients requested from BP ones and vice versa, stars at the 5-99th
   percentiles of the RMSE (coefficient space, normalised by the G flux as the tokens are).
14 mass/age self-consistency: from (logg, [M/H]) on a grid, predicted Teff with mass or age and
   their sigma; then with the predicted Teff fed back as an input.
16 extinction curve the model has learned (``starfm.extinction_curve``): XP spectra of fixed giants
   at increasing E(B-V), and A(lambda)/E(B-V)_true per (E, logg) with their median, versus
   Fitzpatrick (1999) R_V = 3.1 and, when dataset.h5 carries mock truth, the injected law.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from starfm import tokens
from starfm.dataset import Dataset, read_dataset
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.evaluate import UNITS, check_vocabulary, load_model, robust_scatter
from starfm.extinction_curve import curve_agreement, recover_extinction_curve
from starfm.io import StarfmInputError, atomic_path, read_table

log = logging.getLogger("starfm.figures")

FIGURE_NAMES = ["fig01_training_set", "fig02_mass_age_mh", "fig04_spectra_to_labels",
                "fig06_physical_validation", "fig12_bp_rp_inpainting",
                "fig14_mass_age_self_consistency", "fig16_extinction_curve"]
DPI = 150
MAX_POINTS = 20000          # scatter plots subsample beyond this (seeded) to stay readable
LABEL_TEXT = {"mass": r"$M$ [M$_\odot$]", "age": "age [Gyr]", "teff": r"$T_{\rm eff}$ [K]",
              "logg": r"$\log g$ [dex]", "m_h": "[M/H] [dex]"}
PANEL_ORDER = ["teff", "logg", "m_h", "mass", "age"]
XP_CONTEXT = tokens.XP_BP[:29] + tokens.XP_RP[:29]
PERCENTILES = [5, 25, 50, 75, 90, 99]


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    # importing gaiaxpy switches text.usetex on for the whole process; no LaTeX is needed here
    matplotlib.rcParams["text.usetex"] = False
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png", bbox_inches="tight")
    _plt().close(fig)
    log.info("wrote %s", path)
    return path


def _subsample(n: int, k: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def _meta(ds: Dataset, names: list[str]) -> dict[str, np.ndarray]:
    import h5py
    with h5py.File(ds.path, "r") as f:
        have = list(f["meta"].keys()) if "meta" in f else []
    if not have:
        raise StarfmInputError(f"{ds.path}: has no group 'meta' (per-star context for figures)")
    present = [n for n in names if n in have]
    out = read_table(ds.path, present, group="meta")
    return {n: np.asarray(out[n], float) if n in out else np.full(len(ds.source_id), np.nan)
            for n in names}


# ---------------------------------------------------------------- figure 1
def prepare_training_set(ds: Dataset) -> dict:
    """Train-split arrays for Fig. 1; XP relevancy from the NaN pattern of the coefficients."""
    train = ~ds.is_test
    if not train.any():
        raise StarfmInputError(f"{ds.path}: the train split is empty")
    meta = _meta(ds, ["glon", "glat", "ebv_median", "parallax", "phot_g_mean_mag"])
    v = ds.values[train]
    out = {"teff": v[:, tokens.TOKEN_INDEX["teff"]], "logg": v[:, tokens.TOKEN_INDEX["logg"]],
           "m_h": v[:, tokens.TOKEN_INDEX["m_h"]]}
    ebv = meta["ebv_median"][train]
    ebv_token = np.exp(v[:, tokens.TOKEN_INDEX["ln_ebv"]])
    out["ebv"] = np.where(np.isfinite(ebv), ebv, ebv_token)
    out["glon"], out["glat"] = meta["glon"][train], meta["glat"][train]
    out["parallax"], out["g_mag"] = meta["parallax"][train], meta["phot_g_mean_mag"][train]
    for band, names in (("bp", tokens.XP_BP), ("rp", tokens.XP_RP)):
        relevant = np.isfinite(v[:, tokens.index(names)])
        has_band = relevant[:, 0]               # coefficient 0 is always relevant when a band exists
        out[f"{band}_fraction"] = relevant[has_band].mean(axis=0) if has_band.any() \
            else np.zeros(len(names))
        out[f"{band}_median_n_relevant"] = float(np.median(relevant[has_band].sum(axis=1))) \
            if has_band.any() else float("nan")
    return out


def plot_training_set(d: dict, path: Path) -> Path:
    from matplotlib.colors import LogNorm
    plt = _plt()
    fig = plt.figure(figsize=(12, 9))
    gs = fig.add_gridspec(2, 2, hspace=0.3, wspace=0.3)
    ax = fig.add_subplot(gs[0, 0])
    ok = np.isfinite(d["teff"]) & np.isfinite(d["logg"]) & np.isfinite(d["m_h"])
    i = np.flatnonzero(ok)[_subsample(ok.sum())]
    sc = ax.scatter(d["teff"][i], d["logg"][i], c=d["m_h"][i], s=2, cmap="viridis",
                    rasterized=True)
    ax.invert_xaxis(), ax.invert_yaxis()
    ax.set(xlabel=LABEL_TEXT["teff"], ylabel=LABEL_TEXT["logg"],
           title=f"Kiel diagram ({ok.sum()} stars)")
    fig.colorbar(sc, ax=ax, label=LABEL_TEXT["m_h"])

    ax = fig.add_subplot(gs[0, 1])
    ok = np.isfinite(d["glon"]) & np.isfinite(d["glat"]) & (d["ebv"] > 0)
    i = np.flatnonzero(ok)[_subsample(ok.sum())]
    sc = ax.scatter(d["glon"][i], d["glat"][i], c=d["ebv"][i], s=2, cmap="magma_r",
                    norm=LogNorm(), rasterized=True)
    ax.set(xlim=(360, 0), ylim=(-90, 90), xlabel=r"$l$ [deg]", ylabel=r"$b$ [deg]",
           title="sky distribution")
    fig.colorbar(sc, ax=ax, label=r"$E(B-V)$ [mag] (Combined19)")

    ax = fig.add_subplot(gs[1, 0])
    n = np.arange(tokens.N_XP)
    for band, colour in (("bp", "tab:blue"), ("rp", "tab:orange")):
        ax.step(n, d[f"{band}_fraction"], where="mid", color=colour, label=band.upper())
        ax.axvline(d[f"{band}_median_n_relevant"], color=colour, ls="--",
                   label=f"median n_relevant {band.upper()} = "
                         f"{d[f'{band}_median_n_relevant']:.0f}")
    ax.set(xlabel="XP coefficient index n", ylabel="fraction of stars with n relevant",
           ylim=(0, 1.05), title="XP coefficient relevancy")
    ax.legend(fontsize=8)

    sub = gs[1, 1].subgridspec(1, 2, wspace=0.35)
    ax1, ax2 = fig.add_subplot(sub[0]), fig.add_subplot(sub[1])
    plx = d["parallax"][np.isfinite(d["parallax"])]
    if plx.size:
        lo, hi = np.percentile(plx, [0.5, 99.5])
        ax1.hist(plx, bins=60, range=(min(lo, 0), hi), color="grey")
    ax1.set(xlabel=r"parallax $\varpi$ [mas]", ylabel="stars")
    g = d["g_mag"][np.isfinite(d["g_mag"])]
    ax2.hist(g, bins=50, color="grey")
    ax2.set(xlabel=r"$G$ [mag]", ylabel="stars")
    fig.suptitle("Fig. 1: training set")
    return _save(fig, path)


# ---------------------------------------------------------------- figure 2
def prepare_mass_age_mh(ds: Dataset) -> dict:
    """Train-split stars with mass, age (Gyr) and [M/H] all present."""
    v = ds.values[~ds.is_test]
    mass, ln_age, m_h = (v[:, tokens.TOKEN_INDEX[k]] for k in ("mass", "ln_age", "m_h"))
    ok = np.isfinite(mass) & np.isfinite(ln_age) & np.isfinite(m_h)
    if not ok.any():
        raise StarfmInputError(f"{ds.path}: no train-split star has mass, age and [M/H]")
    return {"mass": mass[ok].astype(float), "age": np.exp(ln_age[ok].astype(float)),
            "m_h": m_h[ok].astype(float)}


def _kde(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    from scipy.stats import gaussian_kde
    x = x[_subsample(len(x), 5000)]
    if len(x) < 3 or np.std(x) == 0:
        return np.zeros_like(grid)
    return gaussian_kde(x)(grid)


def plot_mass_age_mh(d: dict, path: Path) -> Path:
    plt = _plt()
    fig = plt.figure(figsize=(8, 7.5))
    gs = fig.add_gridspec(2, 3, width_ratios=[4, 1, 0.2], height_ratios=[1, 4], hspace=0.05,
                          wspace=0.05)
    ax = fig.add_subplot(gs[1, 0])
    i = _subsample(len(d["mass"]))
    sc = ax.scatter(d["mass"][i], d["age"][i], c=d["m_h"][i], s=3, cmap="coolwarm",
                    vmin=np.percentile(d["m_h"], 1), vmax=np.percentile(d["m_h"], 99),
                    rasterized=True)
    ax.set(xlabel=LABEL_TEXT["mass"], ylabel=LABEL_TEXT["age"])
    top = fig.add_subplot(gs[0, 0], sharex=ax)
    right = fig.add_subplot(gs[1, 1], sharey=ax)
    mg = np.linspace(d["mass"].min(), d["mass"].max(), 200)
    ag = np.linspace(d["age"].min(), d["age"].max(), 200)
    top.fill_between(mg, _kde(d["mass"], mg), color="grey", alpha=0.6)
    right.fill_betweenx(ag, _kde(d["age"], ag), color="grey", alpha=0.6)
    top.set_ylabel("KDE")
    right.set_xlabel("KDE")
    top.tick_params(labelbottom=False)
    right.tick_params(labelleft=False)
    fig.colorbar(sc, cax=fig.add_subplot(gs[1, 2]), label=LABEL_TEXT["m_h"])
    top.set_title(f"Fig. 2: mass, age and [M/H] of the training set ({len(d['mass'])} stars)")
    return _save(fig, path)


# ---------------------------------------------------------------- figure 4-5
def prepare_spectra_to_labels(predictions: dict) -> dict:
    """Per model and label: label, prediction (and transformer sigma), scatter, bias, n."""
    out = {}
    for model in ("xgboost", "transformer"):
        for label in PANEL_ORDER:
            x = np.asarray(predictions[f"label_{label}"], float)
            y = np.asarray(predictions[f"{model}_{label}"], float)
            ok = np.isfinite(x) & np.isfinite(y)
            resid = y[ok] - x[ok]
            entry = {"label": x[ok], "pred": y[ok], "scatter": robust_scatter(resid),
                     "bias": float(np.median(resid)) if resid.size else float("nan"),
                     "n": int(ok.sum())}
            if model == "transformer":
                entry["sigma"] = np.asarray(predictions[f"transformer_{label}_sigma"], float)[ok]
            out[(model, label)] = entry
    return out


def plot_spectra_to_labels(d: dict, path: Path) -> Path:
    from matplotlib.colors import LogNorm
    plt = _plt()
    fig, axes = plt.subplots(2, 5, figsize=(22, 9), constrained_layout=True)
    titles = {"xgboost": "XGBoost (bp0-29, rp0-29, colours)",
              "transformer": "transformer (same inputs: bp0-29, rp0-29, colours)"}
    for row, model in enumerate(("xgboost", "transformer")):
        for col, label in enumerate(PANEL_ORDER):
            ax, e = axes[row, col], d[(model, label)]
            if e["n"]:
                lo, hi = np.percentile(np.r_[e["label"], e["pred"]], [0.5, 99.5])
                pad = 0.05 * (hi - lo if hi > lo else 1.0)
                lo, hi = lo - pad, hi + pad
                if model == "transformer":
                    sc = ax.scatter(e["label"], e["pred"], c=e["sigma"], s=3, cmap="viridis",
                                    vmax=np.nanpercentile(e["sigma"], 95), rasterized=True)
                    fig.colorbar(sc, ax=ax, label=r"$\sigma_{\rm pred}$ [" + UNITS[label] + "]")
                elif e["n"] >= 3000:        # density where points would saturate
                    hb = ax.hexbin(e["label"], e["pred"], gridsize=50, extent=(lo, hi, lo, hi),
                                   norm=LogNorm(), mincnt=1, cmap="Greys")
                    fig.colorbar(hb, ax=ax, label="stars per bin")
                else:
                    ax.scatter(e["label"], e["pred"], s=3, color="k", rasterized=True)
                ax.plot([lo, hi], [lo, hi], "r--", lw=1)
                ax.set(xlim=(lo, hi), ylim=(lo, hi))
            ax.text(0.04, 0.96, f"$\\sigma$ = {e['scatter']:.3g} {UNITS[label]}\n"
                    f"bias = {e['bias']:.3g}\nn = {e['n']}", transform=ax.transAxes,
                    va="top", fontsize=9, bbox=dict(fc="white", alpha=0.8, lw=0))
            name = LABEL_TEXT[label]
            ax.set(xlabel=f"observed {name}", ylabel=f"predicted {name}")
            if col == 0:
                ax.set_title(titles[model], loc="left", fontsize=10)
    fig.suptitle("Figs. 4-5: spectra to parameters on the test split")
    return _save(fig, path)


# ---------------------------------------------------------------- figure 6
def prepare_physical_validation(ds: Dataset, model, predictions: dict,
                                batch_size: int = 4096) -> dict:
    """Predicted Kiel diagram; E(B-V) from XP + colours; distance from predicted pseudo-L."""
    test = ds.is_test
    values, errors = ds.values[test], ds.errors[test]
    meta = _meta(ds, ["phot_g_mean_mag", "parallax_corrected", "parallax_error"])
    colours = ["bp_rp", "j_h", "j_k"]
    ebv_mean, _ = model.predict(values, errors, inputs=XP_CONTEXT + colours, outputs=["ln_ebv"],
                                batch_size=batch_size)
    lum_mean, _ = model.predict(values, errors, inputs=XP_CONTEXT + colours + ["ln_ebv"],
                                outputs=["pseudo_luminosity"], batch_size=batch_size)
    g = meta["phot_g_mean_mag"][test]
    plx, plx_err = meta["parallax_corrected"][test], meta["parallax_error"][test]
    with np.errstate(invalid="ignore", divide="ignore"):
        # pseudo-L = parallax[mas] 10^(G/5) -> spectrophotometric parallax, distance in kpc
        d_spec = 10 ** (g / 5) / np.asarray(lum_mean, float)[:, 0]
        good_plx = (plx / plx_err > 5) & (plx > 0)
        d_gaia = np.where(good_plx, 1 / plx, np.nan)
    d_spec[~(d_spec > 0)] = np.nan
    frac = (d_spec - d_gaia) / d_gaia
    ebv_ref = np.exp(values[:, tokens.TOKEN_INDEX["ln_ebv"]].astype(float))
    ebv_pred = np.exp(np.asarray(ebv_mean, float)[:, 0])
    ok_ebv = np.isfinite(ebv_ref) & np.isfinite(ebv_pred)
    return {"teff": np.asarray(predictions["transformer_teff"], float),
            "logg": np.asarray(predictions["transformer_logg"], float),
            "m_h": np.asarray(predictions["transformer_m_h"], float),
            "ebv_ref": ebv_ref, "ebv_pred": ebv_pred,
            "ebv_scatter": robust_scatter(ebv_pred[ok_ebv] - ebv_ref[ok_ebv]),
            "d_gaia": d_gaia, "d_spec": d_spec, "distance_frac_scatter": robust_scatter(frac)}


def plot_physical_validation(d: dict, path: Path) -> Path:
    from matplotlib.colors import LogNorm
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5), constrained_layout=True)
    ax = axes[0]
    ok = np.isfinite(d["teff"]) & np.isfinite(d["logg"])
    sc = ax.scatter(d["teff"][ok], d["logg"][ok], c=d["m_h"][ok], s=3, cmap="viridis",
                    rasterized=True)
    if ok.sum() > 1:
        (t0, t1), (g0, g1) = (np.percentile(v[ok], [0.5, 99.5]) for v in (d["teff"], d["logg"]))
        ax.set(xlim=(t1 + 0.05 * (t1 - t0), t0 - 0.05 * (t1 - t0)),
               ylim=(g1 + 0.05 * (g1 - g0), g0 - 0.05 * (g1 - g0)))
    ax.set(xlabel=r"predicted $T_{\rm eff}$ [K]", ylabel=r"predicted $\log g$ [dex]",
           title="Kiel diagram of predictions (test split)")
    fig.colorbar(sc, ax=ax, label="predicted [M/H] [dex]")
    for ax, (x, y, name, unit, text) in zip(axes[1:], [
            (d["ebv_ref"], d["ebv_pred"], r"$E(B-V)$", "mag",
             f"$\\sigma$ = {d['ebv_scatter']:.3f} mag"),
            (d["d_gaia"], d["d_spec"], "distance", "kpc",
             f"$\\sigma$ = {100 * d['distance_frac_scatter']:.1f} %")]):
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
        if ok.sum() > 1:
            # limits from the reference values: a few wild predictions must not squash the plot
            lo, hi = np.percentile(x[ok], [0.5, 99.5])
            lo, hi = max(lo - 0.1 * (hi - lo), 0), hi + 0.1 * (hi - lo)
            ax.set(xlim=(lo, hi), ylim=(lo, hi))
            hb = ax.hexbin(x[ok], y[ok], gridsize=40, extent=(lo, hi, lo, hi), norm=LogNorm(),
                           mincnt=1, cmap="Greys")
            fig.colorbar(hb, ax=ax, label="stars per bin")
            ax.plot([lo, hi], [lo, hi], "r--", lw=1)
        ax.text(0.04, 0.96, text + f"\nn = {ok.sum()}", transform=ax.transAxes, va="top",
                bbox=dict(fc="white", alpha=0.8, lw=0))
    axes[1].set(xlabel=r"reference $E(B-V)$ [mag] (Combined19)",
                ylabel=r"predicted $E(B-V)$ [mag] (from XP + colours)", title="extinction")
    axes[2].set(xlabel=r"Gaia distance $1/\varpi$ [kpc] ($\varpi/\sigma_\varpi > 5$)",
                ylabel="spectrophotometric distance [kpc]", title="distance")
    fig.suptitle("Fig. 6: physical validation")
    return _save(fig, path)


# ---------------------------------------------------------------- figure 12
def prepare_inpainting(ds: Dataset, model, max_stars: int = 2000, batch_size: int = 4096,
                       seed: int = 0) -> dict:
    """RP from BP and BP from RP for test stars having both bands; stars at RMSE percentiles."""
    test = np.flatnonzero(ds.is_test)
    bp_i, rp_i = tokens.index(tokens.XP_BP), tokens.index(tokens.XP_RP)
    both = np.isfinite(ds.values[test][:, bp_i[0]]) & np.isfinite(ds.values[test][:, rp_i[0]])
    rows = test[both]
    rows = rows[_subsample(len(rows), max_stars, seed)]
    if rows.size == 0:
        raise StarfmInputError(f"{ds.path}: no test star has both BP and RP coefficients")
    values, errors = ds.values[rows], ds.errors[rows]
    out = {}
    for task, src, dst in (("bp_to_rp", tokens.XP_BP, tokens.XP_RP),
                           ("rp_to_bp", tokens.XP_RP, tokens.XP_BP)):
        mean, std = model.predict(values, errors, inputs=src, outputs=dst, batch_size=batch_size)
        obs = values[:, tokens.index(dst)].astype(float)
        mean = np.where(np.isfinite(obs), np.asarray(mean, float), np.nan)
        with np.errstate(invalid="ignore"):
            rmse = np.sqrt(np.nanmean((mean - obs) ** 2, axis=1))
        ok = np.flatnonzero(np.isfinite(rmse))
        pick = ok[np.argsort(rmse[ok])][
            np.clip((np.array(PERCENTILES) / 100 * len(ok)).astype(int), 0, len(ok) - 1)]
        out[task] = {"observed": obs[pick], "predicted": np.asarray(mean, float)[pick],
                     "sigma": np.asarray(std, float)[pick], "rmse": rmse[pick],
                     "source_id": ds.source_id[rows][pick], "all_rmse": rmse}
    return out


def plot_inpainting(d: dict, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(4, 3, figsize=(16, 13), constrained_layout=True)
    n = np.arange(tokens.N_XP)
    for k, pct in enumerate(PERCENTILES):
        for j, (task, title) in enumerate((("rp_to_bp", "BP from RP"), ("bp_to_rp", "RP from BP"))):
            ax = axes[2 * (k // 3) + j, k % 3]
            e = d[task]
            obs, pred, sig = e["observed"][k], e["predicted"][k], e["sigma"][k]
            ax.axhline(0, color="k", ls="--", lw=0.7)
            ax.fill_between(n, pred - sig, pred + sig, color="tab:red", alpha=0.25, lw=0)
            ax.plot(n, obs, color="tab:blue", lw=1.2, label="observed")
            ax.plot(n, pred, color="tab:red", lw=1.0, label=r"predicted $\pm\sigma$")
            ax.set_facecolor("#eef4ff" if task == "rp_to_bp" else "#fff0f0")
            ax.set_title(f"{title}: {pct}th percentile RMSE = {e['rmse'][k]:.2g} "
                         f"(source {e['source_id'][k]})", fontsize=8)
            ax.set(xlabel="coefficient index", ylabel=r"coefficient / $F_G$")
            if k == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Fig. 12: BP <-> RP inpainting (XP coefficients, test split)")
    return _save(fig, path)


# ---------------------------------------------------------------- figure 14
def prepare_self_consistency(ds: Dataset, model, n_grid: int = 60) -> dict:
    """Model on a (logg, [M/H]) grid: Teff, mass, ln_age from (logg, [M/H]) alone, then mass and
    age again with the predicted Teff fed back; plus the observed test stars for reference."""
    train = ~ds.is_test
    lg = ds.column("logg")[train]
    mh = ds.column("m_h")[train]
    lg, mh = lg[np.isfinite(lg)], mh[np.isfinite(mh)]
    if lg.size == 0 or mh.size == 0:
        raise StarfmInputError(f"{ds.path}: no train-split star has logg and [M/H]")
    logg_g, mh_g = np.meshgrid(np.linspace(*np.percentile(lg, [1, 99]), n_grid),
                               np.linspace(*np.percentile(mh, [1, 99]), n_grid))
    grid = np.full((logg_g.size, len(tokens.VOCABULARY)), np.nan, np.float32)
    grid[:, tokens.TOKEN_INDEX["logg"]] = logg_g.ravel()
    grid[:, tokens.TOKEN_INDEX["m_h"]] = mh_g.ravel()
    err = np.zeros_like(grid)
    outs = ["teff", "mass", "ln_age"]
    m1, s1 = (np.asarray(a, float) for a in model.predict(grid, err, inputs=["logg", "m_h"],
                                                           outputs=outs))
    grid2 = grid.copy()
    grid2[:, tokens.TOKEN_INDEX["teff"]] = m1[:, 0]
    m2, s2 = (np.asarray(a, float) for a in model.predict(grid2, err,
                                                           inputs=["logg", "m_h", "teff"],
                                                           outputs=["mass", "ln_age"]))
    obs = ds.values[ds.is_test]
    return {"logg": logg_g.ravel(), "m_h": mh_g.ravel(), "teff": m1[:, 0],
            "mass": m1[:, 1], "mass_sigma": s1[:, 1],
            "age": np.exp(m1[:, 2]), "ln_age_sigma": s1[:, 2],
            "mass_fed": m2[:, 0], "mass_fed_sigma": s2[:, 0],
            "age_fed": np.exp(m2[:, 1]), "ln_age_fed_sigma": s2[:, 1],
            "obs_teff": obs[:, tokens.TOKEN_INDEX["teff"]].astype(float),
            "obs_logg": obs[:, tokens.TOKEN_INDEX["logg"]].astype(float),
            "obs_mass": obs[:, tokens.TOKEN_INDEX["mass"]].astype(float),
            "obs_age": np.exp(obs[:, tokens.TOKEN_INDEX["ln_age"]].astype(float))}


def plot_self_consistency(d: dict, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(2, 5, figsize=(24, 9), constrained_layout=True, sharey=True)
    rows = [("mass", "mass", "mass_sigma", "mass_fed", "mass_fed_sigma", LABEL_TEXT["mass"],
             r"$\sigma_M$ [M$_\odot$]"),
            ("age", "age", "ln_age_sigma", "age_fed", "ln_age_fed_sigma", LABEL_TEXT["age"],
             r"$\sigma_{\ln \rm age}$")]
    for r, (obs_key, mean, sig, mean_fed, sig_fed, name, signame) in enumerate(rows):
        obs = d[f"obs_{obs_key}"]
        ok = np.isfinite(obs) & np.isfinite(d["obs_teff"]) & np.isfinite(d["obs_logg"])
        vmin, vmax = (np.nanpercentile(obs[ok], [2, 98]) if ok.any()
                      else np.nanpercentile(d[mean], [2, 98]))
        panels = [(d["obs_teff"][ok], d["obs_logg"][ok], obs[ok], name,
                   "observed (test split)", (vmin, vmax)),
                  (d["teff"], d["logg"], d[mean], name, "from logg, [M/H]", (vmin, vmax)),
                  (d["teff"], d["logg"], d[sig], signame, "from logg, [M/H]: uncertainty", None),
                  (d["teff"], d["logg"], d[mean_fed], name, "with predicted Teff fed back",
                   (vmin, vmax)),
                  (d["teff"], d["logg"], d[sig_fed], signame, "Teff fed back: uncertainty", None)]
        for c, (x, y, col, clabel, title, lim) in enumerate(panels):
            ax = axes[r, c]
            kw = {"vmin": lim[0], "vmax": lim[1]} if lim else {}
            sc = ax.scatter(x, y, c=col, s=4, cmap="viridis" if lim else "magma",
                            rasterized=True, **kw)
            fig.colorbar(sc, ax=ax, label=clabel)
            ax.set(title=title, xlabel=r"$T_{\rm eff}$ [K]" + (" (predicted)" if c else ""))
            if not ax.xaxis_inverted():
                ax.invert_xaxis()
        axes[r, 0].set_ylabel(r"$\log g$ [dex]")
    axes[0, 0].invert_yaxis()
    fig.suptitle("Fig. 14: mass and age self-consistency on a (logg, [M/H]) grid")
    return _save(fig, path)


# ---------------------------------------------------------------- figure 16
def prepare_extinction_curve(ds: Dataset, model, batch_size: int = 4096) -> dict:
    """The model's extinction curve on the SPEC grid; the injected law when dataset.h5 has truth.

    Curves are A(lambda)/E(B-V)_true (E_true = 0.884 E_SFD, or the truth file's factor), the
    magnitude form; the papers' ln form is kept for comparison (see ``starfm.extinction_curve``).
    """
    truth_attrs = ds.attrs.get("truth_attrs")
    c = recover_extinction_curve(model, truth_attrs if isinstance(truth_attrs, dict) else None,
                                 batch_size=batch_size)
    lam = c.wavelength_nm
    with np.errstate(all="ignore"):
        ln_median = np.nanmedian(c.ln_form.reshape(-1, len(lam)), axis=0)
        spread = np.nanstd(c.a_over_ebv.reshape(-1, len(lam)), axis=0)
    out = {"wavelength": lam, "logg": c.logg, "teff": c.teff, "ebv": c.ebv,
           "ebv_reference": c.ebv_reference, "curves": c.per_true(c.a_over_ebv),
           "median": c.per_true(c.median), "spread": c.per_true(spread),
           "ln_median": c.per_true(ln_median), "f99": c.f99, "flux": c.flux,
           "ebv_true_over_sfd": c.ebv_true_over_sfd, "injected_law": c.injected_law,
           "injected": None if c.injected is None else c.per_true(c.injected)}
    if c.injected is not None:
        out["agreement"] = curve_agreement(c.median, c.injected, lam)
        out["ln_agreement"] = curve_agreement(ln_median, c.injected, lam)
        log.info("Fig. 16: recovered vs injected extinction law, median |dA/E|/(A/E) over "
                 "400-950 nm: %.3f (magnitude form), %.3f (ln form)", out["agreement"],
                 out["ln_agreement"])
    return out


def plot_extinction_curve(d: dict, path: Path) -> Path:
    from matplotlib.colors import Normalize
    plt = _plt()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(14, 5.5), constrained_layout=True)
    lam = d["wavelength"]
    # left: the representative giant (highest logg of the grid) at each E, flux at a common parallax
    j = len(d["logg"]) - 1
    flux = d["flux"][:, j]
    scale = np.nanmax(flux[0]) if np.isfinite(flux[0]).any() else 1.0
    colours = plt.get_cmap("inferno")(np.linspace(0.0, 0.8, len(flux)))
    for k, ebv in enumerate(np.concatenate([[d["ebv_reference"]], d["ebv"]])):
        ax0.plot(lam, flux[k] / scale, color=colours[k], label=f"E(B-V)$_{{\\rm SFD}}$ = {ebv:.3g}")
    ax0.set(xlabel=r"$\lambda$ [nm]", ylabel="flux at a fixed parallax (reference peak = 1)",
            title=f"XP spectra: $T_{{\\rm eff}}$ = {d['teff'][j]:.0f} K, log g = {d['logg'][j]:.1f}, "
                  "[M/H] = 0, 1.2 M$_\\odot$, 4.5 Gyr")
    ax0.legend(fontsize=8)
    # right: every (E, logg) curve, the median, references
    norm = Normalize(d["logg"].min(), d["logg"].max())
    cmap = plt.get_cmap("viridis")
    for i in range(len(d["ebv"])):
        for jj, g in enumerate(d["logg"]):
            ax1.plot(lam, d["curves"][i, jj], color=cmap(norm(g)), lw=0.5, alpha=0.6)
    ax1.fill_between(lam, d["median"] - d["spread"], d["median"] + d["spread"], color="0.5",
                     alpha=0.25, lw=0, label=r"$\pm$ standard deviation over the grid")
    if d["injected"] is not None:
        ax1.plot(lam, d["injected"], color="tab:red", lw=4, alpha=0.35,
                 label=f"injected law: {d['injected_law']} "
                       f"(median |$\\Delta$|/A = {d['agreement']:.1%})")
    ax1.plot(lam, d["f99"], color="k", ls="--", lw=1.5, label="Fitzpatrick (1999) $R_V$ = 3.1")
    ax1.plot(lam, d["median"], color="k", lw=2, label=r"median, 2.5 log$_{10}(F_0/F_E)$")
    ln_label = r"median, ln$(F_0/F_E)$ (papers' eq. 5)"
    if d["injected"] is not None:
        ln_label += f" ({d['ln_agreement']:.1%})"
    ax1.plot(lam, d["ln_median"], color="tab:blue", ls=":", lw=1.5, label=ln_label)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax1, label=r"$\log g$ of the grid star [dex]")
    finite = np.concatenate([d["f99"], d["median"][np.isfinite(d["median"])]])
    ax1.set(xlabel=r"$\lambda$ [nm]",
            ylabel=f"A($\\lambda$) / E(B-V)$_{{\\rm true}}$ (E$_{{\\rm true}}$ = "
                   f"{d['ebv_true_over_sfd']:g} E$_{{\\rm SFD}}$)",
            ylim=(0, 1.3 * np.nanmax(finite)),
            title="extinction curve: E(B-V)$_{\\rm SFD}$ = "
                  + ", ".join(f"{e:g}" for e in d["ebv"]) + f" vs {d['ebv_reference']:.3g}")
    ax1.legend(fontsize=7, loc="upper right")
    fig.suptitle("Fig. 16: the extinction curve learned by the model")
    return _save(fig, path)


# ---------------------------------------------------------------- stage
def make_figures(dataset, model, predictions, out_dir, batch_size: int = 4096) -> list[Path]:
    """Write every figure of :data:`FIGURE_NAMES` into ``out_dir``; return their paths.

    ``model``: a path to model.pt or a loaded ``StarFM``-like object.
    """
    ds = read_dataset(dataset)
    if not ds.is_test.any():
        raise StarfmInputError(f"{ds.path}: the test split is empty")
    model_source = model if isinstance(model, (str, Path)) else "the model"
    if isinstance(model, (str, Path)):
        model = load_model(model)
    check_vocabulary(model, model_source)
    pred = read_table(predictions)
    needed = ["source_id"] + [f"{m}_{lab}" for m in ("transformer", "xgboost")
                              for lab in tokens.TARGETS] + \
        [f"label_{lab}" for lab in tokens.TARGETS] + \
        [f"transformer_{lab}_sigma" for lab in tokens.TARGETS]
    missing = [c for c in needed if c not in pred]
    if missing:
        raise StarfmInputError(f"{predictions}: missing column(s) {missing}; it has {sorted(pred)}")
    if not np.array_equal(pred["source_id"], ds.source_id[ds.is_test]):
        raise StarfmInputError(f"{predictions}: its source_ids are not the test split of "
                               f"{ds.path}; rerun evaluate")
    out_dir = Path(out_dir)
    steps = {
        "fig01_training_set": lambda: plot_training_set(prepare_training_set(ds), _p(out_dir, 1)),
        "fig02_mass_age_mh": lambda: plot_mass_age_mh(prepare_mass_age_mh(ds), _p(out_dir, 2)),
        "fig04_spectra_to_labels": lambda: plot_spectra_to_labels(
            prepare_spectra_to_labels(pred), _p(out_dir, 4)),
        "fig06_physical_validation": lambda: plot_physical_validation(
            prepare_physical_validation(ds, model, pred, batch_size), _p(out_dir, 6)),
        "fig12_bp_rp_inpainting": lambda: plot_inpainting(
            prepare_inpainting(ds, model, batch_size=batch_size), _p(out_dir, 12)),
        "fig14_mass_age_self_consistency": lambda: plot_self_consistency(
            prepare_self_consistency(ds, model), _p(out_dir, 14)),
        "fig16_extinction_curve": lambda: plot_extinction_curve(
            prepare_extinction_curve(ds, model, batch_size), _p(out_dir, 16)),
    }
    assert list(steps) == FIGURE_NAMES
    return [steps[name]() for name in FIGURE_NAMES]


def _p(out_dir: Path, number: int) -> Path:
    name = next(n for n in FIGURE_NAMES if n.startswith(f"fig{number:02d}_"))
    return out_dir / f"{name}.png"


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("figures", "Draw the paper's figures (Zhang et al. 2026 numbering: "
                          + ", ".join(FIGURE_NAMES) + ") as 150 dpi PNGs.")
    parser.add_argument("--dataset", required=True, help="dataset.h5 from the assemble stage")
    parser.add_argument("--model", required=True, help="model.pt from the train stage")
    parser.add_argument("--predictions", required=True,
                        help="predictions.h5 from the evaluate stage")
    parser.add_argument("--out-dir", required=True, help="directory for the PNG files")
    parser.add_argument("--batch-size", type=int, default=4096, help="stars per model call")
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    make_figures(args.dataset, args.model, args.predictions, args.out_dir, args.batch_size)
    return 0
