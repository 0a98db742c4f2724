"""Fig. 6: physical validation: predicted Kiel diagram, E(B-V) and spectrophotometric distance."""
from __future__ import annotations

import numpy as np

from starfm import tokens
from starfm.dataset import Dataset
from starfm.figures.common import finite_float, plt, read_meta, robust_scatter

XP_CONTEXT = tokens.XP_BP[:29] + tokens.XP_RP[:29]


def prepare_physical_validation(ds: Dataset, model, predictions: dict,
                                batch_size: int = 4096) -> dict:
    """Predicted Kiel diagram; E(B-V) from XP + colours; distance from predicted pseudo-L."""
    test = ds.is_test
    values, errors = ds.values[test], ds.errors[test]
    meta = read_meta(ds, ["phot_g_mean_mag", "parallax_corrected", "parallax_error"])
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


def plot_physical_validation(d: dict):
    from matplotlib.colors import LogNorm
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(18, 5.5), constrained_layout=True)
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
    return fig


def build(inputs, settings):
    d = prepare_physical_validation(inputs.ds, inputs.model, inputs.predictions)
    ok_d = np.isfinite(d["d_gaia"]) & np.isfinite(d["d_spec"])
    numbers = {"ebv_scatter_mag": finite_float(d["ebv_scatter"]),
               "n_ebv": int(np.sum(np.isfinite(d["ebv_ref"]) & np.isfinite(d["ebv_pred"]))),
               "distance_frac_scatter": finite_float(d["distance_frac_scatter"]),
               "n_distance": int(ok_d.sum())}
    return plot_physical_validation(d), numbers
