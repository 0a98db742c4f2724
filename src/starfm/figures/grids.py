"""Figs. 13-15: the model on artificial parameter grids (no observed spectra involved).

13 Kiel diagram from a uniform (logg, [M/H]) grid, logg 0-4, [M/H] -2.5-0.5: the model is given
   logg, [M/H] and the low-extinction reference E(B-V) (``reference_ebv``) and predicts Teff (with
   sigma) and the pseudo-luminosity, whose G-band luminosity is log10 L_G/L_sun = (4.67 - M_G) / 2.5
   with M_G = 5 log10(L) - 10 - A_G, A_G = 2.74 x 0.884 E(B-V)_SFD; the observed panel uses the
   same formula with the stars' pseudo-luminosity token and E(B-V).
14 mass/age self-consistency on a (logg, [M/H]) grid, with the predicted Teff fed back.
15 age-[M/H] relation at logg 2.5: predicted ln age with its sigma along [M/H].
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starfm import tokens
from starfm.figures.common import LABEL_TEXT, finite_float, plt, subsample
from starfm.errors import StarfmInputError

M_G_SUN = 4.67
R_G = 2.74                     # A_G / E(B-V)_true for a red giant (Casagrande & VandenBerg 2018)
EBV_TRUE_OVER_SFD = 0.884


@dataclass(frozen=True)
class KielSettings:
    n_logg: int = 41
    n_m_h: int = 31
    logg_range: tuple = (0.0, 4.0)
    m_h_range: tuple = (-2.5, 0.5)


@dataclass(frozen=True)
class SelfConsistencySettings:
    n_grid: int = 60


@dataclass(frozen=True)
class AgeMetallicitySettings:
    logg: float = 2.5
    n_m_h: int = 61
    m_h_range: tuple = (-2.5, 0.5)
    logg_window: float = 0.15      # observed stars within logg +- this, for comparison


def _grid(n_rows: int, **columns) -> np.ndarray:
    values = np.full((n_rows, len(tokens.VOCABULARY)), np.nan)
    for name, col in columns.items():
        values[:, tokens.TOKEN_INDEX[name]] = col
    return values


def _dust_free(model) -> float:
    from starfm.extinction_curve import reference_ebv
    return float(np.log(reference_ebv(model)))


# ---------------------------------------------------------------- figure 13
def log_lum_g(pseudo_luminosity, a_g=0.0):
    """log10 L_G/L_sun from the pseudo-luminosity L = parallax[mas] 10^(G/5) and A_G."""
    with np.errstate(invalid="ignore", divide="ignore"):
        m_g = 5 * np.log10(np.where(pseudo_luminosity > 0, pseudo_luminosity, np.nan)) - 10 - a_g
    return (M_G_SUN - m_g) / 2.5


def prepare_kiel_grid(ds, model, s: KielSettings = KielSettings()) -> dict:
    logg_g, mh_g = np.meshgrid(np.linspace(*s.logg_range, s.n_logg), np.linspace(*s.m_h_range, s.n_m_h))
    n = logg_g.size
    ln_ref = _dust_free(model)
    values = _grid(n, logg=logg_g.ravel(), m_h=mh_g.ravel(), ln_ebv=np.full(n, ln_ref))
    mean, std = model.predict(values, inputs=["logg", "m_h", "ln_ebv"],
                              outputs=["teff", "pseudo_luminosity"])
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    v = ds.values
    ok = np.isfinite(v[:, tokens.TOKEN_INDEX["teff"]]) & np.isfinite(v[:, tokens.TOKEN_INDEX["logg"]])
    rows = np.flatnonzero(ok)[subsample(ok.sum())]
    ebv = np.exp(v[rows, tokens.TOKEN_INDEX["ln_ebv"]].astype(float))
    obs_lum = log_lum_g(v[rows, tokens.TOKEN_INDEX["pseudo_luminosity"]].astype(float),
                        R_G * EBV_TRUE_OVER_SFD * np.nan_to_num(ebv))
    return {"logg": logg_g.ravel(), "m_h": mh_g.ravel(), "teff": mean[:, 0], "teff_sigma": std[:, 0],
            "log_lum": log_lum_g(mean[:, 1], R_G * EBV_TRUE_OVER_SFD * np.exp(ln_ref)),
            "ebv_reference": float(np.exp(ln_ref)),
            "obs_teff": v[rows, tokens.TOKEN_INDEX["teff"]].astype(float),
            "obs_logg": v[rows, tokens.TOKEN_INDEX["logg"]].astype(float), "obs_log_lum": obs_lum}


def plot_kiel_grid(d: dict):
    pyplot = plt()
    fig, axes = pyplot.subplots(2, 2, figsize=(13, 11), constrained_layout=True, sharex=True,
                                sharey=True)
    lum_lim = np.nanpercentile(np.r_[d["obs_log_lum"], d["log_lum"]], [2, 98])
    panels = [(axes[0, 0], d["obs_teff"], d["obs_logg"], d["obs_log_lum"], "viridis", lum_lim,
               r"log$_{10}$ $L_G/L_\odot$ (from parallax)", "observed stars (catalogue labels)"),
              (axes[0, 1], d["teff"], d["logg"], d["log_lum"], "viridis", lum_lim,
               r"log$_{10}$ $L_G/L_\odot$ (predicted)", "model on the (logg, [M/H]) grid"),
              (axes[1, 0], d["teff"], d["logg"], d["m_h"], "coolwarm", None, "input [M/H] [dex]",
               "model grid, coloured by input [M/H]"),
              (axes[1, 1], d["teff"], d["logg"], d["teff_sigma"], "magma", None,
               r"$\sigma_{T_{\rm eff}}$ [K]", "model grid: Teff uncertainty")]
    for ax, x, y, c, cmap, lim, clabel, title in panels:
        kw = {"vmin": lim[0], "vmax": lim[1]} if lim is not None else {}
        ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(c)
        sc = ax.scatter(x[ok], y[ok], c=c[ok], s=6, cmap=cmap, rasterized=True, **kw)
        fig.colorbar(sc, ax=ax, label=clabel)
        ax.set(title=title, xlabel=LABEL_TEXT["teff"], ylabel=LABEL_TEXT["logg"])
    axes[0, 0].invert_xaxis()
    axes[0, 0].invert_yaxis()
    fig.suptitle("Fig. 13: Kiel diagram of the model from a logg x [M/H] grid")
    return fig


def build_kiel_grid(inputs, s):
    d = prepare_kiel_grid(inputs.ds, inputs.model, s)
    mid = np.abs(d["m_h"]) == np.abs(d["m_h"]).min()
    slope = np.polyfit(d["logg"][mid], d["teff"][mid], 1)[0] if mid.sum() > 1 else np.nan
    numbers = {"n_grid": int(len(d["teff"])), "ebv_reference": d["ebv_reference"],
               "teff_min": finite_float(np.nanmin(d["teff"])),
               "teff_max": finite_float(np.nanmax(d["teff"])),
               "dteff_dlogg_at_solar": finite_float(slope),
               "teff_sigma_median": finite_float(np.nanmedian(d["teff_sigma"])),
               "teff_sigma_max": finite_float(np.nanmax(d["teff_sigma"])),
               "teff_at_mh_low_minus_high_logg2p5": _teff_mh_contrast(d)}
    return plot_kiel_grid(d), numbers


def _teff_mh_contrast(d):
    at = np.isclose(d["logg"], d["logg"][np.argmin(np.abs(d["logg"] - 2.5))])
    if at.sum() < 2:
        return None
    lo, hi = np.argmin(np.where(at, d["m_h"], np.inf)), np.argmax(np.where(at, d["m_h"], -np.inf))
    return finite_float(d["teff"][lo] - d["teff"][hi])


# ---------------------------------------------------------------- figure 14
def prepare_self_consistency(ds, model, n_grid: int = 60) -> dict:
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


def plot_self_consistency(d: dict):
    pyplot = plt()
    fig, axes = pyplot.subplots(2, 5, figsize=(24, 9), constrained_layout=True, sharey=True)
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
    return fig




def build_self_consistency(inputs, s):
    d = prepare_self_consistency(inputs.ds, inputs.model, s.n_grid)
    numbers = {"n_grid": int(len(d["teff"])),
               "mass_sigma_median": finite_float(np.nanmedian(d["mass_sigma"])),
               "mass_fed_sigma_median": finite_float(np.nanmedian(d["mass_fed_sigma"])),
               "ln_age_sigma_median": finite_float(np.nanmedian(d["ln_age_sigma"])),
               "ln_age_fed_sigma_median": finite_float(np.nanmedian(d["ln_age_fed_sigma"])),
               "mass_change_median": finite_float(np.nanmedian(np.abs(d["mass_fed"] - d["mass"]))),
               "age_change_median": finite_float(np.nanmedian(np.abs(d["age_fed"] - d["age"])))}
    return plot_self_consistency(d), numbers


# ---------------------------------------------------------------- figure 15
def prepare_age_metallicity(ds, model, s: AgeMetallicitySettings = AgeMetallicitySettings()) -> dict:
    m_h = np.linspace(*s.m_h_range, s.n_m_h)
    values = _grid(len(m_h), logg=np.full(len(m_h), s.logg), m_h=m_h)
    mean, std = model.predict(values, inputs=["logg", "m_h"], outputs=["ln_age"])
    mu, sig = np.asarray(mean, float)[:, 0], np.asarray(std, float)[:, 0]
    v = ds.values
    lg, mh, la = (v[:, tokens.TOKEN_INDEX[k]].astype(float) for k in ("logg", "m_h", "ln_age"))
    near = (np.abs(lg - s.logg) < s.logg_window) & np.isfinite(mh) & np.isfinite(la)
    edges = np.linspace(*s.m_h_range, 13)
    which = np.digitize(mh[near], edges) - 1
    obs_median = np.array([np.median(np.exp(la[near][which == b])) if np.sum(which == b) >= 10
                           else np.nan for b in range(len(edges) - 1)])   # 12 bins, not stars
    return {"m_h": m_h, "obs_bin_m_h": 0.5 * (edges[1:] + edges[:-1]), "obs_bin_median": obs_median, "age": np.exp(mu), "age_lo": np.exp(mu - sig), "age_hi": np.exp(mu + sig),
            "ln_age_sigma": sig, "obs_m_h": mh[near], "obs_age": np.exp(la[near]),
            "logg": s.logg, "logg_window": s.logg_window}


def plot_age_metallicity(d: dict):
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(9, 6), constrained_layout=True)
    if len(d["obs_m_h"]):
        ax.scatter(d["obs_m_h"], d["obs_age"], s=4, color="0.6", alpha=0.5, rasterized=True,
                   label=f"catalogue stars, |log g - {d['logg']:g}| < {d['logg_window']:g}")
    ax.fill_between(d["m_h"], d["age_lo"], d["age_hi"], color="tab:blue", alpha=0.3, lw=0,
                    label=r"model $\pm 1\sigma$")
    ax.plot(d["m_h"], d["age"], color="tab:blue", lw=2, label="model mean")
    ax.plot(d["obs_bin_m_h"], d["obs_bin_median"], "k--o", ms=4,
            label="catalogue median per [M/H] bin (>= 10 stars)")
    ax.set(xlabel=LABEL_TEXT["m_h"], ylabel=LABEL_TEXT["age"], ylim=(0, None),
           title=f"Fig. 15: age-[M/H] relation predicted at log g = {d['logg']:g} (from logg, [M/H])")
    ax.legend(fontsize=8)
    return fig


def build_age_metallicity(inputs, s):
    d = prepare_age_metallicity(inputs.ds, inputs.model, s)
    at = lambda x: int(np.argmin(np.abs(d["m_h"] - x)))  # noqa: E731
    numbers = {"age_at_mh_minus2": finite_float(d["age"][at(-2.0)]),
               "age_at_mh_0": finite_float(d["age"][at(0.0)]),
               "ln_age_sigma_at_mh_minus2": finite_float(d["ln_age_sigma"][at(-2.0)]),
               "ln_age_sigma_at_mh_0": finite_float(d["ln_age_sigma"][at(0.0)]),
               "n_observed_near": int(len(d["obs_m_h"])),
               "observed_median_age_at_mh_minus2": finite_float(
                   d["obs_bin_median"][int(np.argmin(np.abs(d["obs_bin_m_h"] + 2.0)))]),
               "observed_median_age_at_mh_0": finite_float(
                   d["obs_bin_median"][int(np.argmin(np.abs(d["obs_bin_m_h"])))])}
    return plot_age_metallicity(d), numbers
