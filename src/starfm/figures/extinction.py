"""Fig. 16: the extinction curve learned by the model (``starfm.extinction_curve``).

Also writes ``results/evaluation/extinction_curve.json``: ``{"median_abs_rel_error": ..., "law":
...}``, the median over 400-900 nm of |A_recovered - A_injected| / A_injected (magnitude form),
null without mock truth (real data have no injected law).
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np

from starfm.extinction_curve import curve_agreement, recover_extinction_curve
from starfm.figures.common import finite_float, plt
from starfm.tables import atomic_path

log = logging.getLogger("starfm.figures")
JSON_WINDOW_NM = (400.0, 900.0)


def prepare_extinction_curve(ds, model, batch_size: int = 4096) -> dict:
    """The model's extinction curve on the SPEC grid; the injected law when dataset.h5 has truth.

    Curves are A(lambda)/E(B-V)_true (E_true = 0.884 E_SFD, or the truth file's factor), the
    magnitude form; the papers' ln form is kept for comparison (see ``starfm.extinction_curve``).
    """
    truth_attrs = ds.attrs.get("truth_attrs")
    c = recover_extinction_curve(model, truth_attrs if isinstance(truth_attrs, dict) else None,
                                 batch_size=batch_size)
    lam = c.wavelength_nm
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)      # all-NaN columns of a poor model
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
        out["agreement_400_900"] = curve_agreement(c.median, c.injected, lam, window=JSON_WINDOW_NM)
        out["shape_agreement_400_900"] = curve_agreement(c.median, c.injected, lam,
                                                         window=JSON_WINDOW_NM, up_to_offset=True)
        out["ln_agreement"] = curve_agreement(ln_median, c.injected, lam)
        log.info("Fig. 16: recovered vs injected extinction law, median |dA/E|/(A/E) over "
                 "400-950 nm: %.3f (magnitude form), %.3f (ln form)", out["agreement"],
                 out["ln_agreement"])
    return out


def plot_extinction_curve(d: dict):
    from matplotlib.colors import Normalize
    pyplot = plt()
    fig, (ax0, ax1) = pyplot.subplots(1, 2, figsize=(14, 5.5), constrained_layout=True)
    lam = d["wavelength"]
    # left: the representative giant (highest logg of the grid) at each E, flux at a common parallax
    j = len(d["logg"]) - 1
    flux = d["flux"][:, j]
    scale = np.nanmax(flux[0]) if np.isfinite(flux[0]).any() else 1.0
    colours = pyplot.get_cmap("inferno")(np.linspace(0.0, 0.8, len(flux)))
    for k, ebv in enumerate(np.concatenate([[d["ebv_reference"]], d["ebv"]])):
        ax0.plot(lam, flux[k] / scale, color=colours[k], label=f"E(B-V)$_{{\\rm SFD}}$ = {ebv:.3g}")
    ax0.set(xlabel=r"$\lambda$ [nm]", ylabel="flux at a fixed parallax (reference peak = 1)",
            title=f"XP spectra: $T_{{\\rm eff}}$ = {d['teff'][j]:.0f} K, log g = {d['logg'][j]:.1f}, "
                  "[M/H] = 0, 1.2 M$_\\odot$, 4.5 Gyr")
    ax0.legend(fontsize=8)
    # right: every (E, logg) curve, the median, references
    norm = Normalize(d["logg"].min(), d["logg"].max())
    cmap = pyplot.get_cmap("viridis")
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
    sm = pyplot.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax1, label=r"$\log g$ of the grid star [dex]")
    # y range from the literature curve and the median redward of 400 nm: the model's blue-end
    # curves (336-400 nm, where BP is faint for red giants) can ring far above it
    finite = np.concatenate([d["f99"], d["median"][np.isfinite(d["median"]) & (np.asarray(lam) >= 400)]])
    ax1.set(xlabel=r"$\lambda$ [nm]",
            ylabel=f"A($\\lambda$) / E(B-V)$_{{\\rm true}}$ (E$_{{\\rm true}}$ = "
                   f"{d['ebv_true_over_sfd']:g} E$_{{\\rm SFD}}$)",
            ylim=(0, 1.3 * np.nanmax(finite)),
            title="extinction curve: E(B-V)$_{\\rm SFD}$ = "
                  + ", ".join(f"{e:g}" for e in d["ebv"]) + f" vs {d['ebv_reference']:.3g}")
    ax1.legend(fontsize=7, loc="upper right")
    fig.suptitle("Fig. 16: the extinction curve learned by the model")
    return fig


def extinction_summary(d: dict) -> dict:
    """What extinction_curve.json holds."""
    return {"median_abs_rel_error": finite_float(d.get("agreement_400_900", np.nan)),
            "law": d["injected_law"], "window_nm": list(JSON_WINDOW_NM),
            "shape_median_abs_rel_error": finite_float(d.get("shape_agreement_400_900", np.nan)),
            "form": "A = 2.5 log10(F_0/F_E), per E(B-V)_true",
            "ebv_reference": d["ebv_reference"], "ebv": [float(e) for e in d["ebv"]]}


def write_extinction_json(d: dict, path) -> Path:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(extinction_summary(d), indent=2) + "\n")
    log.info("wrote %s", path)
    return Path(path)


def build(inputs, settings, extra_outputs=None):
    d = prepare_extinction_curve(inputs.ds, inputs.model)
    if extra_outputs:
        write_extinction_json(d, extra_outputs[0])
    numbers = {**extinction_summary(d), "median_abs_rel_error_400_950": finite_float(d.get("agreement", np.nan)),
               "ln_form_400_950": finite_float(d.get("ln_agreement", np.nan))}
    return plot_extinction_curve(d), numbers
