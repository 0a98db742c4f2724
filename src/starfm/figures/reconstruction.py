"""Figs. 8-11: XP spectra reconstructed from the catalogue parameters, compared with the observed.

For test stars with both XP bands, the five labels and E(B-V), the model is given Teff, logg,
[M/H], mass, ln age and ln E(B-V) and asked for the 110 XP coefficients and the pseudo-luminosity.
Observed and reconstructed coefficients (tokens = coefficients / F_G, "normalised") become fluxes
through GaiaXPy (336-1020 nm); coefficients the Gaia pipeline marked irrelevant (NaN in the
observed star) are left out of both. The reconstruction error of a star is the fractional RMSE,
rms(NN_norm - Obs_norm) / mean(Obs_norm) over wavelength. Absolute fluxes (Fig. 8) use the
observed F_G; the "NN distance" is 10^(G/5) / L_pred kpc (pseudo-luminosity L = parallax 10^(G/5)).

8  observed vs reconstructed spectra of stars at the 5-99th percentiles of the RMSE;
9  fractional residual (NN_norm - Obs_norm) / Obs_norm vs wavelength: median and 16-84 %;
10 log10 RMSE vs Gaia distance 1/parallax and parallax S/N;
11 RMSE over the parameter space (Teff-logg, [M/H]-Teff, mass-age).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starfm import tokens
from starfm.figures.common import (LABEL_TEXT, PARAMETER_TOKENS, PERCENTILES, XP_TOKENS,
                                   finite_float, plt, read_meta, subsample,
                                   wavelength_nm, xp_flux)
from starfm.errors import StarfmInputError


@dataclass(frozen=True)
class Settings:
    max_stars: int = 2000      # test stars reconstructed (seeded subsample)
    seed: int = 0


def prepare_reconstruction(ds, model, s: Settings = Settings(), batch_size: int = 4096) -> dict:
    """Observed and reconstructed (normalised) spectra of test stars, per-star RMSE and context."""
    test = np.flatnonzero(ds.is_test)
    v = ds.values[test]
    ix = tokens.TOKEN_INDEX
    ok = (np.isfinite(v[:, ix["bp0"]]) & np.isfinite(v[:, ix["rp0"]])
          & np.all(np.isfinite(v[:, tokens.index(PARAMETER_TOKENS)]), axis=1))
    rows = test[ok]
    if rows.size == 0:
        raise StarfmInputError(f"{ds.path}: no test star has both XP bands, the five labels and "
                               "E(B-V)")
    rows = rows[subsample(len(rows), s.max_stars, s.seed)]
    values = ds.values[rows].astype(float)
    mean, _ = model.predict(values, inputs=PARAMETER_TOKENS,
                            outputs=XP_TOKENS + ["pseudo_luminosity"], batch_size=batch_size)
    mean = np.asarray(mean, float)
    obs = values[:, tokens.index(XP_TOKENS)]
    pred = np.where(np.isfinite(obs), mean[:, :2 * tokens.N_XP], np.nan)
    n = tokens.N_XP
    obs_flux = xp_flux(obs[:, :n], obs[:, n:])
    nn_flux = xp_flux(pred[:, :n], pred[:, n:])
    with np.errstate(invalid="ignore", divide="ignore"):
        rmse = np.sqrt(np.mean((nn_flux - obs_flux) ** 2, axis=1)) / np.abs(obs_flux.mean(axis=1))
    meta = read_meta(ds, ["phot_g_mean_mag", "parallax_corrected", "parallax_error"])
    g = meta["phot_g_mean_mag"][rows]
    plx, plx_err = meta["parallax_corrected"][rows], meta["parallax_error"][rows]
    lum = mean[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        d_nn = np.where(lum > 0, 10 ** (g / 5) / lum, np.nan)
        d_gaia = np.where(plx > 0, 1.0 / plx, np.nan)
        snr = plx / plx_err
    return {"wavelength": wavelength_nm(), "source_id": ds.source_id[rows], "obs_norm": obs_flux,
            "nn_norm": nn_flux, "rmse": rmse, "g_flux": tokens.g_flux(g), "d_nn": d_nn, "d_gaia": d_gaia,
            "parallax_snr": snr, "teff": values[:, ix["teff"]], "logg": values[:, ix["logg"]],
            "m_h": values[:, ix["m_h"]], "mass": values[:, ix["mass"]],
            "age": np.exp(values[:, ix["ln_age"]]), "ebv": np.exp(values[:, ix["ln_ebv"]])}


def percentile_picks(rmse: np.ndarray, percentiles=PERCENTILES) -> np.ndarray:
    """Index of the star at each percentile of the finite ``rmse`` (rank floor(p/100 (n-1)))."""
    ok = np.flatnonzero(np.isfinite(rmse))
    order = ok[np.argsort(rmse[ok], kind="stable")]
    ranks = np.floor(np.asarray(percentiles) / 100 * (len(order) - 1)).astype(int)
    return order[ranks]


# ---------------------------------------------------------------- figure 8
def prepare_reconstructed_spectra(r: dict) -> dict:
    pick = percentile_picks(r["rmse"])
    return {"wavelength": r["wavelength"], "percentiles": PERCENTILES, "pick": pick,
            "obs": r["obs_norm"][pick] * r["g_flux"][pick, None],
            "nn": r["nn_norm"][pick] * r["g_flux"][pick, None],
            **{k: r[k][pick] for k in ("rmse", "source_id", "d_nn", "d_gaia", "teff", "logg", "m_h",
                                      "mass", "age", "ebv")}}


def plot_reconstructed_spectra(d: dict):
    pyplot = plt()
    fig, axes = pyplot.subplots(2, 3, figsize=(18, 9), constrained_layout=True)
    for k, ax in enumerate(axes.ravel()):
        ax.plot(d["wavelength"], d["obs"][k], color="tab:blue", lw=1.3, label="observed")
        ax.plot(d["wavelength"], d["nn"][k], color="tab:red", lw=1.0, label="reconstructed")
        ax.set_title(f"{d['percentiles'][k]}th percentile: RMSE = {100 * d['rmse'][k]:.2f} % "
                     f"(source {d['source_id'][k]})", fontsize=9)
        ax.text(0.98, 0.03, f"$T_{{\\rm eff}}$ {d['teff'][k]:.0f} K, log g {d['logg'][k]:.2f}, "
                f"[M/H] {d['m_h'][k]:+.2f}\n$M$ {d['mass'][k]:.2f} M$_\\odot$, age "
                f"{d['age'][k]:.1f} Gyr, E(B-V) {d['ebv'][k]:.2f}\nNN distance {d['d_nn'][k]:.2f} kpc"
                f", Gaia 1/$\\varpi$ {d['d_gaia'][k]:.2f} kpc", transform=ax.transAxes, ha="right",
                va="bottom", fontsize=7.5, bbox=dict(fc="white", alpha=0.6, lw=0))
        ax.set(xlabel=r"$\lambda$ [nm]", ylabel=r"flux [W m$^{-2}$ nm$^{-1}$]")
        if k == 0:
            ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Fig. 8: observed vs reconstructed XP spectra (from Teff, logg, [M/H], mass, age, "
                 "E(B-V)), test stars at RMSE percentiles")
    return fig


# ---------------------------------------------------------------- figure 9
def prepare_fractional_residual(r: dict) -> dict:
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (r["nn_norm"] - r["obs_norm"]) / r["obs_norm"]
    frac[~np.isfinite(frac)] = np.nan
    p16, p50, p84 = np.nanpercentile(frac, [16, 50, 84], axis=0)
    return {"wavelength": r["wavelength"], "median": p50, "p16": p16, "p84": p84,
            "n": int(np.isfinite(frac).any(axis=1).sum())}


def plot_fractional_residual(d: dict):
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(10, 5), constrained_layout=True)
    lam = d["wavelength"]
    ax.fill_between(lam, d["p16"], d["p84"], color="tab:blue", alpha=0.25, lw=0,
                    label="16th-84th percentile")
    ax.plot(lam, d["median"], color="tab:blue", lw=2, label="median")
    ax.axhline(0, color="k", ls="--", lw=0.8)
    lim = np.nanmax(np.abs(np.r_[d["p16"][(lam > 380) & (lam < 1000)],
                                 d["p84"][(lam > 380) & (lam < 1000)]]))
    ax.set(xlabel=r"$\lambda$ [nm]", ylim=(-1.5 * lim, 1.5 * lim),
           ylabel=r"(NN$_{\rm norm}$ - Obs$_{\rm norm}$) / Obs$_{\rm norm}$",
           title=f"Fig. 9: fractional residual of the reconstructed spectra ({d['n']} test stars)")
    ax.legend()
    return fig


# ---------------------------------------------------------------- figure 10
def _running_median(x, y, bins):
    idx = np.digitize(x, bins) - 1
    med = np.full(len(bins) - 1, np.nan)
    for b in range(len(bins) - 1):          # a handful of bins, not stars
        sel = (idx == b) & np.isfinite(y)
        if sel.sum() >= 5:
            med[b] = np.median(y[sel])
    return 0.5 * (bins[1:] + bins[:-1]), med


def prepare_rmse_vs_astrometry(r: dict) -> dict:
    log_rmse = np.log10(r["rmse"])
    out = {"log_rmse": log_rmse, "d_gaia": r["d_gaia"], "parallax_snr": r["parallax_snr"]}
    for key, scale in (("d_gaia", "lin"), ("parallax_snr", "log")):
        x = r[key]
        ok = np.isfinite(x) & np.isfinite(log_rmse) & (x > 0)
        if ok.sum() < 10:
            out[f"{key}_bins"], out[f"{key}_median"] = np.array([]), np.array([])
            continue
        lo, hi = np.percentile(x[ok], [1, 99])
        bins = np.geomspace(lo, hi, 11) if scale == "log" else np.linspace(lo, hi, 11)
        out[f"{key}_bins"], out[f"{key}_median"] = _running_median(x[ok], log_rmse[ok], bins)
        from scipy.stats import spearmanr
        out[f"{key}_spearman"] = float(spearmanr(x[ok], log_rmse[ok]).statistic)
    return out


def plot_rmse_vs_astrometry(d: dict):
    from matplotlib.colors import LogNorm
    pyplot = plt()
    fig, axes = pyplot.subplots(2, 1, figsize=(9, 9), constrained_layout=True)
    for ax, key, xlabel, logx in ((axes[0], "d_gaia", r"Gaia distance $1/\varpi$ [kpc]", False),
                                  (axes[1], "parallax_snr", r"parallax S/N $\varpi/\sigma_\varpi$",
                                   True)):
        x, y = d[key], d["log_rmse"]
        ok = np.isfinite(x) & np.isfinite(y) & (x > 0)
        if ok.sum() > 1:
            xlo, xhi = np.percentile(x[ok], [0.5, 99.5])
            ylo, yhi = np.percentile(y[ok], [0.5, 99.5])
            hb = ax.hexbin(np.log10(x[ok]) if logx else x[ok], y[ok], gridsize=40, mincnt=1,
                           norm=LogNorm(), cmap="viridis",
                           extent=(*(np.log10([xlo, xhi]) if logx else (xlo, xhi)), ylo, yhi))
            fig.colorbar(hb, ax=ax, label="N stars per bin (log)")
            if len(d[f"{key}_bins"]):
                bx = np.log10(d[f"{key}_bins"]) if logx else d[f"{key}_bins"]
                ax.plot(bx, d[f"{key}_median"], "r-o", ms=4, label="running median")
                ax.legend(fontsize=8)
        ax.set(xlabel=("log$_{10}$ " + xlabel) if logx else xlabel,
               ylabel=r"log$_{10}$ fractional RMSE")
        if f"{key}_spearman" in d:
            ax.set_title(f"Spearman rank correlation = {d[f'{key}_spearman']:.2f}", fontsize=10)
    fig.suptitle("Fig. 10: reconstruction error vs distance and parallax S/N (test split)")
    return fig


# ---------------------------------------------------------------- figure 11
PROJECTIONS = [("teff", "logg"), ("m_h", "teff"), ("mass", "age")]


def prepare_rmse_parameter_space(r: dict) -> dict:
    return {**{k: r[k] for k in ("teff", "logg", "m_h", "mass", "age")},
            "log_rmse": np.log10(r["rmse"])}


def plot_rmse_parameter_space(d: dict):
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(19, 5.5), constrained_layout=True)
    c = d["log_rmse"]
    vmin, vmax = np.nanpercentile(c, [2, 98])
    for ax, (x, y) in zip(axes, PROJECTIONS):
        ok = np.isfinite(d[x]) & np.isfinite(d[y]) & np.isfinite(c)
        order = np.flatnonzero(ok)[np.argsort(c[ok])]          # worst on top
        sc = ax.scatter(d[x][order], d[y][order], c=c[order], s=5, cmap="plasma", vmin=vmin,
                        vmax=vmax, rasterized=True)
        fig.colorbar(sc, ax=ax, label=r"log$_{10}$ fractional RMSE")
        ax.set(xlabel=LABEL_TEXT[x], ylabel=LABEL_TEXT[y])
        if (x, y) == ("teff", "logg"):
            ax.invert_xaxis(), ax.invert_yaxis()
    fig.suptitle("Fig. 11: reconstruction error across the parameter space (test split, catalogue "
                 "labels)")
    return fig


# ---------------------------------------------------------------- builders
def _base_numbers(r):
    rmse = r["rmse"][np.isfinite(r["rmse"])]
    return {"n_stars": int(rmse.size), "rmse_median": float(np.median(rmse)),
            "rmse_p5": float(np.percentile(rmse, 5)), "rmse_p99": float(np.percentile(rmse, 99))}


def build_reconstructed_spectra(inputs, s):
    r = prepare_reconstruction(inputs.ds, inputs.model, s)
    d = prepare_reconstructed_spectra(r)
    ok = np.isfinite(r["d_nn"]) & np.isfinite(r["d_gaia"]) & (r["parallax_snr"] > 5)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (r["d_nn"][ok] - r["d_gaia"][ok]) / r["d_gaia"][ok]
    from starfm.figures.common import robust_scatter
    numbers = {**_base_numbers(r), "picked_rmse": [float(x) for x in d["rmse"]],
               "nn_distance_frac_scatter": finite_float(robust_scatter(frac)),
               "n_distance": int(ok.sum())}
    return plot_reconstructed_spectra(d), numbers


def build_fractional_residual(inputs, s):
    r = prepare_reconstruction(inputs.ds, inputs.model, s)
    d = prepare_fractional_residual(r)
    lam = d["wavelength"]
    numbers = {**_base_numbers(r)}
    for name, (lo, hi) in {"below_400": (336, 400), "400_900": (400, 900),
                           "above_900": (900, 1020)}.items():
        sel = (lam >= lo) & (lam <= hi)
        numbers[f"median_abs_median_{name}"] = finite_float(np.nanmedian(np.abs(d["median"][sel])))
        numbers[f"median_width_16_84_{name}"] = finite_float(np.nanmedian((d["p84"] - d["p16"])[sel]))
    return plot_fractional_residual(d), numbers


def build_rmse_vs_astrometry(inputs, s):
    r = prepare_reconstruction(inputs.ds, inputs.model, s)
    d = prepare_rmse_vs_astrometry(r)
    numbers = {**_base_numbers(r), "spearman_distance": finite_float(d.get("d_gaia_spearman", np.nan)),
               "spearman_parallax_snr": finite_float(d.get("parallax_snr_spearman", np.nan))}
    return plot_rmse_vs_astrometry(d), numbers


def build_rmse_parameter_space(inputs, s):
    r = prepare_reconstruction(inputs.ds, inputs.model, s)
    d = prepare_rmse_parameter_space(r)
    from scipy.stats import spearmanr
    numbers = {**_base_numbers(r)}
    for k in ("teff", "logg", "m_h", "mass", "age"):
        ok = np.isfinite(d[k]) & np.isfinite(d["log_rmse"])
        numbers[f"spearman_{k}"] = finite_float(spearmanr(d[k][ok], d["log_rmse"][ok]).statistic) \
            if ok.sum() > 2 else None
    return plot_rmse_parameter_space(d), numbers
