"""Figs. 4 and 5: spectra -> parameters on the test split, panels (a)-(f) (Zhang et al. 2026).

(a) XGBoost on the standard inputs, (b) the transformer on the same inputs, (c) the first 5 BP and
RP coefficients, (d) a random 64 of the coefficients and colours in random order, (e) only the
least informative high-order coefficients, (f) those with the labels mixed in (identity).
Fig. 4: Teff, logg, [M/H]; Fig. 5: mass, age.

Predictions come from ``predictions.h5``: group ``settings/<name>`` for each input setting
(columns ``transformer_<l>``, ``transformer_<l>_sigma``, ``transformer_<l>_zscore``,
``xgboost_<l>``, ``label_<l>``), the root columns standing in for ``standard`` while that group
is absent. A setting not evaluated gives a panel that says so.
"""
from __future__ import annotations

import numpy as np

from starfm.figures.common import (LABEL_TEXT, UNITS, UNITS_TEX, finite_float,
                                   not_available, one_to_one, plt, robust_scatter)

# (panel, setting, model, title)
PANELS = [("a", "standard", "xgboost", "XGBoost, standard inputs"),
          ("b", "standard", "transformer", "transformer, standard inputs"),
          ("c", "first5", "transformer", "first 5 BP and RP coefficients"),
          ("d", "random64", "transformer", "random 64 coefficients + colours"),
          ("e", "high_order", "transformer", "high-order coefficients only"),
          ("f", "high_order+labels", "transformer", "high-order + labels (identity)")]


def setting_tables(inputs) -> dict[str, dict | None]:
    """{setting: its predictions table, or None when evaluate has not produced it}."""
    tables = {s: inputs.setting(s) for s in dict.fromkeys(p[1] for p in PANELS)}
    tables["standard_source"] = "settings/standard"
    if tables["standard"] is None:          # evaluate's root columns stand in for it
        tables["standard"] = inputs.predictions
        tables["standard_source"] = root_description(inputs)
    return tables


def root_description(inputs) -> str:
    """What the root columns of predictions.h5 are: the transformer inputs evaluate recorded."""
    from starfm.tables import read_attrs
    listed = read_attrs(inputs._predictions).get("transformer_inputs")
    if listed is None:
        return "root columns"
    listed = [str(t) for t in listed]
    extra = [t for t in listed if not (t.startswith("bp") or t.startswith("rp"))
             or t == "bp_rp"]
    return f"root columns ({len(listed)} inputs: XP + {', '.join(extra)})"


def prepare_spectra_to_labels(tables: dict, labels: list[str]) -> dict:
    """{(panel, label): {label, pred, sigma, zscore, scatter, bias, n, zscore_std} or None}."""
    out = {}
    for panel, setting, model, _ in PANELS:
        table = tables.get(setting)
        for label in labels:
            if table is None or f"{model}_{label}" not in table or f"label_{label}" not in table:
                out[(panel, label)] = None
                continue
            x = np.asarray(table[f"label_{label}"], float)
            y = np.asarray(table[f"{model}_{label}"], float)
            ok = np.isfinite(x) & np.isfinite(y)
            resid = y[ok] - x[ok]
            e = {"label": x[ok], "pred": y[ok], "scatter": robust_scatter(resid),
                 "bias": float(np.median(resid)) if resid.size else float("nan"), "n": int(ok.sum())}
            if model == "transformer":
                e["sigma"] = np.asarray(table[f"transformer_{label}_sigma"], float)[ok]
                z = np.asarray(table.get(f"transformer_{label}_zscore", np.full(len(x), np.nan)),
                               float)[ok]
                z = z[np.isfinite(z)]
                e["zscore_std"] = float(np.std(z)) if z.size > 1 else float("nan")
                e["median_sigma"] = float(np.median(e["sigma"])) if e["sigma"].size else float("nan")
            out[(panel, label)] = e
    return out


def plot_spectra_to_labels(d: dict, labels: list[str], title: str,
                           standard_source: str = "settings/standard"):
    pyplot = plt()
    fig, axes = pyplot.subplots(len(labels), len(PANELS), figsize=(4.2 * len(PANELS), 3.7 * len(labels)),
                                constrained_layout=True, squeeze=False)
    for col, (panel, setting, model, ptitle) in enumerate(PANELS):
        for row, label in enumerate(labels):
            ax, e = axes[row, col], d[(panel, label)]
            name = LABEL_TEXT[label]
            if e is None:
                not_available(ax, f"setting '{setting}'\nnot evaluated")
            else:
                text = (f"$\\sigma$ = {e['scatter']:.3g} {UNITS_TEX[label]}\n"
                        f"bias = {e['bias']:.3g}\nn = {e['n']}")
                if model == "transformer":
                    text += f"\nz std = {e['zscore_std']:.2f}"
                    one_to_one(ax, fig, e["label"], e["pred"], colour=e["sigma"],
                               colour_label=r"$\sigma_{\rm model}$ [" + UNITS_TEX[label] + "]",
                               text=text)
                else:
                    one_to_one(ax, fig, e["label"], e["pred"], density=True, text=text)
                ax.set(xlabel=f"catalogue {name}", ylabel=f"predicted {name}")
            if row == 0:
                ax.set_title(f"({panel}) {ptitle}", fontsize=10)
                if setting == "standard" and standard_source != "settings/standard":
                    ax.set_title(f"({panel}) {ptitle.split(',')[0]}: {standard_source}", fontsize=7)
    fig.suptitle(title)
    return fig


def _numbers(d: dict, labels: list[str]) -> dict:
    out = {}
    for panel, setting, model, _ in PANELS:
        for label in labels:
            e = d[(panel, label)]
            key = f"{panel}_{label}"
            if e is None:
                out[key] = None
                continue
            out[key] = {"setting": setting, "model": model, "scatter": finite_float(e["scatter"]),
                        "bias": finite_float(e["bias"]), "n": e["n"], "unit": UNITS[label]}
            if model == "transformer":
                out[key]["zscore_std"] = finite_float(e["zscore_std"])
                out[key]["median_sigma"] = finite_float(e["median_sigma"])
    out["settings_missing"] = sorted({s for p, s, _, _ in PANELS
                                      if all(d[(p, lab)] is None for lab in labels)})
    return out


def _builder(labels: list[str], title: str):
    def build(inputs, settings):
        tables = setting_tables(inputs)
        d = prepare_spectra_to_labels(tables, labels)
        numbers = {**_numbers(d, labels), "standard_source": tables["standard_source"]}
        return plot_spectra_to_labels(d, labels, title, tables["standard_source"]), numbers
    return build


build_atmospheric_parameters = _builder(
    ["teff", "logg", "m_h"], "Fig. 4: Teff, logg and [M/H] from XP spectra and photometry (test split)")
build_mass_age = _builder(["mass", "age"], "Fig. 5: mass and age from XP spectra and photometry "
                          "(test split)")
