"""Fig. 17: cross-attention maps of the decoder at E(B-V) ~ 0 and at high E(B-V), and their difference.

One red giant (Teff 4700 K, logg 2.5, [M/H] 0, as the paper's Fig. 16 star) is shown to the model
twice: at the low-extinction reference E(B-V) (:func:`starfm.extinction_curve.reference_ebv`; the
mock survey has no star at E = 0) and at a high one.
Its colours (BP-RP, J-H, J-K) at each E are those the model itself predicts for that star and E,
so both contexts describe one physical star. The map is the last decoder block's cross-attention
(mean over heads, :meth:`starfm.inference.StarFM.cross_attention`) of each requested output to each
input token.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starfm import tokens
from starfm.figures.common import finite_float, plt

INPUTS = ["teff", "logg", "m_h", "ln_ebv", "bp_rp", "j_h", "j_k"]
OUTPUTS = ["bp0", "bp1", "bp2", "rp0", "rp1", "rp2", "pseudo_luminosity", "mass", "ln_age"]
NAMES = {"teff": "Teff", "logg": "log g", "m_h": "[M/H]", "ln_ebv": "E(B-V)", "bp_rp": "BP-RP",
         "j_h": "J-H", "j_k": "J-K", "pseudo_luminosity": "pseudo-L", "mass": "mass",
         "ln_age": "age", **{f"bp{i}": f"BP[{i}]" for i in range(3)},
         **{f"rp{i}": f"RP[{i}]" for i in range(3)}}


@dataclass(frozen=True)
class Settings:
    teff: float = 4700.0
    logg: float = 2.5
    m_h: float = 0.0
    ebv_high: float = 0.37      # E(B-V)_SFD of the reddened star (the paper's 0.37)


def prepare_cross_attention(model, s: Settings = Settings()) -> dict:
    from starfm.extinction_curve import reference_ebv
    ebv = np.array([reference_ebv(model), s.ebv_high])
    values = np.full((2, len(tokens.VOCABULARY)), np.nan)
    ix = tokens.TOKEN_INDEX
    values[:, ix["teff"]], values[:, ix["logg"]], values[:, ix["m_h"]] = s.teff, s.logg, s.m_h
    values[:, ix["ln_ebv"]] = np.log(ebv)
    colours, _ = model.predict(values, inputs=["teff", "logg", "m_h", "ln_ebv"],
                               outputs=["bp_rp", "j_h", "j_k"])
    for j, c in enumerate(["bp_rp", "j_h", "j_k"]):
        values[:, ix[c]] = colours[:, j]
    w, names = model.cross_attention(values, inputs=INPUTS, outputs=OUTPUTS)
    w = np.asarray(w, float)
    return {"low": w[0], "high": w[1], "diff": w[1] - w[0], "inputs": names, "outputs": OUTPUTS,
            "ebv": ebv, "colours": np.asarray(colours, float)}


def plot_cross_attention(d: dict):
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(20, 6), constrained_layout=True)
    vmax = max(np.nanmax(d["low"]), np.nanmax(d["high"]))
    dmax = np.nanmax(np.abs(d["diff"])) or 1.0
    panels = [("low", f"E(B-V) = {d['ebv'][0]:.3f} (low-E reference)", "viridis", 0, vmax),
              ("high", f"E(B-V) = {d['ebv'][1]:.2f}", "viridis", 0, vmax),
              ("diff", "difference (high - low E)", "RdBu_r", -dmax, dmax)]
    for ax, (key, title, cmap, lo, hi) in zip(axes, panels):
        im = ax.imshow(d[key].T, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        ax.set_xticks(range(len(d["outputs"])), [NAMES[o] for o in d["outputs"]], rotation=45)
        ax.set_yticks(range(len(d["inputs"])), [NAMES[i] for i in d["inputs"]])
        ax.set(xlabel="requested output", ylabel="input token", title=title)
        fig.colorbar(im, ax=ax, label="attention weight" if key != "diff" else "change in weight")
        for (i, j), val in np.ndenumerate(d[key].T):
            ax.text(j, i, f"{val:.2f}", ha="center", va="center", fontsize=6,
                    color="w" if key != "diff" and val < 0.6 * hi else "k")
    fig.suptitle("Fig. 17: decoder cross-attention for a red giant (Teff 4700 K, log g 2.5, [M/H] 0) "
                 "without and with extinction")
    return fig


def build(inputs, s):
    d = prepare_cross_attention(inputs.model, s)
    i_ebv, i_teff = d["inputs"].index("ln_ebv"), d["inputs"].index("teff")
    col = {o: k for k, o in enumerate(d["outputs"])}
    numbers = {"ebv": [float(e) for e in d["ebv"]]}
    for o in ("bp0", "rp0", "mass", "ln_age"):
        numbers[o] = {"ebv_weight_low": finite_float(d["low"][col[o], i_ebv]),
                      "ebv_weight_high": finite_float(d["high"][col[o], i_ebv]),
                      "teff_weight_low": finite_float(d["low"][col[o], i_teff]),
                      "teff_weight_high": finite_float(d["high"][col[o], i_teff]),
                      "max_abs_change": finite_float(np.abs(d["diff"][col[o]]).max())}
    return plot_cross_attention(d), numbers
