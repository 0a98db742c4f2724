"""Figs. 1 and 2: the training set (Kiel diagram, sky, XP relevancy, parallax and G; mass-age-[M/H])."""
from __future__ import annotations

import numpy as np

from starfm import tokens
from starfm.dataset import Dataset
from starfm.figures.common import LABEL_TEXT, plt, read_meta, subsample
from starfm.errors import StarfmInputError

def prepare_training_set(ds: Dataset) -> dict:
    """Train-split arrays for Fig. 1; XP relevancy from the NaN pattern of the coefficients."""
    train = ~ds.is_test
    if not train.any():
        raise StarfmInputError(f"{ds.path}: the train split is empty")
    meta = read_meta(ds, ["glon", "glat", "ebv_median", "parallax", "phot_g_mean_mag"])
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


def plot_training_set(d: dict):
    from matplotlib.colors import LogNorm
    pyplot = plt()
    fig = pyplot.figure(figsize=(12, 9))
    gs = fig.add_gridspec(2, 2, hspace=0.3, wspace=0.3)
    ax = fig.add_subplot(gs[0, 0])
    ok = np.isfinite(d["teff"]) & np.isfinite(d["logg"]) & np.isfinite(d["m_h"])
    i = np.flatnonzero(ok)[subsample(ok.sum())]
    sc = ax.scatter(d["teff"][i], d["logg"][i], c=d["m_h"][i], s=2, cmap="viridis",
                    rasterized=True)
    ax.invert_xaxis(), ax.invert_yaxis()
    ax.set(xlabel=LABEL_TEXT["teff"], ylabel=LABEL_TEXT["logg"],
           title=f"Kiel diagram ({ok.sum()} stars)")
    fig.colorbar(sc, ax=ax, label=LABEL_TEXT["m_h"])

    ax = fig.add_subplot(gs[0, 1])
    ok = np.isfinite(d["glon"]) & np.isfinite(d["glat"]) & (d["ebv"] > 0)
    i = np.flatnonzero(ok)[subsample(ok.sum())]
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
    return fig


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
    x = x[subsample(len(x), 5000)]
    if len(x) < 3 or np.std(x) == 0:
        return np.zeros_like(grid)
    return gaussian_kde(x)(grid)


def plot_mass_age_mh(d: dict):
    pyplot = plt()
    fig = pyplot.figure(figsize=(8, 7.5))
    gs = fig.add_gridspec(2, 3, width_ratios=[4, 1, 0.2], height_ratios=[1, 4], hspace=0.05,
                          wspace=0.05)
    ax = fig.add_subplot(gs[1, 0])
    i = subsample(len(d["mass"]))
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
    return fig


def build_training_set(inputs, settings):
    d = prepare_training_set(inputs.ds)
    numbers = {"n_train": int(len(d["teff"])),
               "n_with_labels": int(np.sum(np.isfinite(d["teff"]) & np.isfinite(d["logg"]))),
               "bp_median_n_relevant": d["bp_median_n_relevant"],
               "rp_median_n_relevant": d["rp_median_n_relevant"],
               "median_parallax_mas": float(np.nanmedian(d["parallax"])),
               "median_g_mag": float(np.nanmedian(d["g_mag"])),
               "median_ebv": float(np.nanmedian(d["ebv"]))}
    return plot_training_set(d), numbers


def build_mass_age_mh(inputs, settings):
    d = prepare_mass_age_mh(inputs.ds)
    q = lambda x, p: float(np.percentile(x, p))  # noqa: E731
    numbers = {"n": int(len(d["mass"])), "mass_median": q(d["mass"], 50),
               "mass_p16": q(d["mass"], 16), "mass_p84": q(d["mass"], 84),
               "age_median": q(d["age"], 50), "age_p5": q(d["age"], 5), "age_p95": q(d["age"], 95),
               "spearman_mass_age": _spearman(d["mass"], d["age"]),
               "spearman_age_mh": _spearman(d["age"], d["m_h"])}
    return plot_mass_age_mh(d), numbers


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr
    return float(spearmanr(x, y).statistic)
