"""Fig. 18: BP-RP and J-K predicted from the XP coefficients alone (BP[0-31], RP[0-31]).

The training recipe never requests these two tokens as outputs (``TrainConfig.never_request``),
so the decoder was never optimised for them: a tight one-to-one relation means the embedding
encodes the SED.
"""
from __future__ import annotations

import numpy as np

from starfm import tokens
from starfm.figures.common import LABEL_TEXT, finite_float, one_to_one, plt, robust_scatter

INPUTS = tokens.XP_BP[:32] + tokens.XP_RP[:32]
COLOURS = ["bp_rp", "j_k"]


def never_requested(model) -> list[str]:
    """Tokens the model's training recipe never requested as outputs (from model.pt's info)."""
    import json
    config = getattr(model, "info", {}).get("train_config", {})
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError:
            config = {}
    return list(config.get("never_request", [])) if isinstance(config, dict) else []


def prepare_unseen_colours(ds, model, batch_size: int = 4096) -> dict:
    values = ds.values[ds.is_test].astype(float)
    mean, std = model.predict(values, inputs=INPUTS, outputs=COLOURS, batch_size=batch_size)
    out = {"never_request": never_requested(model)}
    for j, c in enumerate(COLOURS):
        obs = values[:, tokens.TOKEN_INDEX[c]]
        pred, sig = np.asarray(mean, float)[:, j], np.asarray(std, float)[:, j]
        ok = np.isfinite(obs) & np.isfinite(pred)
        out[c] = {"observed": obs[ok], "predicted": pred[ok], "sigma": sig[ok],
                  "scatter": robust_scatter(pred[ok] - obs[ok]),
                  "bias": float(np.median(pred[ok] - obs[ok])) if ok.any() else float("nan"),
                  "n": int(ok.sum()),
                  "pearson_r": float(np.corrcoef(pred[ok], obs[ok])[0, 1]) if ok.sum() > 2
                  else float("nan")}
    return out


def plot_unseen_colours(d: dict):
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(13, 5.8), constrained_layout=True)
    for ax, c, panel in zip(axes, COLOURS, "ab"):
        e = d[c]
        one_to_one(ax, fig, e["observed"], e["predicted"], colour=e["sigma"],
                   colour_label=r"$\sigma_{\rm model}$ [mag]",
                   text=f"$\\sigma$ = {e['scatter']:.3f} mag\nbias = {e['bias']:.3f}\n"
                        f"Pearson r = {e['pearson_r']:.2f}\nn = {e['n']}")
        trained = "never requested in training" if c in d["never_request"] else \
            "NOTE: requested in training"
        ax.set(xlabel=f"observed {LABEL_TEXT[c]}", ylabel=f"predicted {LABEL_TEXT[c]}",
               title=f"({panel}) {LABEL_TEXT[c]} from BP[0-31], RP[0-31] ({trained})")
    fig.suptitle("Fig. 18: colours never trained as outputs, predicted from XP (test split)")
    return fig


def build(inputs, settings):
    d = prepare_unseen_colours(inputs.ds, inputs.model)
    numbers = {c: {"scatter_mag": finite_float(d[c]["scatter"]), "bias_mag": finite_float(d[c]["bias"]),
                   "n": d[c]["n"], "pearson_r": finite_float(d[c]["pearson_r"]),
                   "never_requested": c in d["never_request"]} for c in COLOURS}
    return plot_unseen_colours(d), numbers
