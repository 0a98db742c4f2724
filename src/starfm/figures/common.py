"""Shared plotting helpers of the figures: inputs (read lazily), saving, subsampling, panels, spectra.

Every figure module has, per figure, a ``prepare_*`` (numbers in, a dict of arrays out; what the
tests check) and a ``plot_*`` (that dict -> a matplotlib figure), and a build function
``(inputs, settings)`` which runs the pair and returns ``(figure, numbers)``: ``numbers`` is the
small JSON the caption quotes (``results/figures/<name>.json``). The registry
(:mod:`starfm.figures.registry`) names each figure's module, build function and settings class.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path

import numpy as np

from starfm import tokens
from starfm.errors import StarfmInputError
from starfm.tables import atomic_path, read_table

log = logging.getLogger("starfm.figures")

DPI = 150
MAX_POINTS = 20000          # scatter plots subsample beyond this (seeded) to stay readable
LABEL_TEXT = {"mass": r"$M$ [M$_\odot$]", "age": "age [Gyr]", "teff": r"$T_{\rm eff}$ [K]",
              "logg": r"$\log g$ [dex]", "m_h": "[M/H] [dex]", "alpha_m": r"[$\alpha$/M] [dex]", "bp_rp": r"$G_{\rm BP}-G_{\rm RP}$ [mag]",
              "j_k": r"$J-K$ [mag]", "rp0": r"RP[0] / $F_G$"}
UNITS = tokens.TARGET_UNITS
UNITS_TEX = {**tokens.TARGET_UNITS, "mass": r"M$_\odot$"}
PERCENTILES = [5, 25, 50, 75, 90, 99]
# parameters -> spectra: the five labels and the dust (Figs. 7-11, 16)
PARAMETER_TOKENS = ["teff", "logg", "m_h", "mass", "ln_age", "ln_ebv"]
XP_TOKENS = tokens.XP_BP + tokens.XP_RP
BP_RP_SPLIT_NM = 640.0              # Fig. 12: BP below, RP above


def plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    # importing gaiaxpy switches text.usetex on for the whole process; no LaTeX is needed here
    matplotlib.rcParams["text.usetex"] = False
    return pyplot


def save(fig, png: Path, pdf: Path | None = None) -> list[Path]:
    """Write the figure as a 150 dpi PNG (and a PDF), atomically; close it."""
    out = []
    for path, fmt in ((png, "png"), (pdf, "pdf")):
        if path is None:
            continue
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=fmt, bbox_inches="tight")
        out.append(Path(path))
    plt().close(fig)
    log.info("wrote %s", ", ".join(map(str, out)))
    return out


def subsample(n: int, k: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of size min(n, k)."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))


def parse_settings(cls, given: dict | None, name: str):
    """``given`` (a JSON object) -> the frozen dataclass ``cls``, through the one settings parser
    (unknown keys and values the schema's ``figures.<name>`` forbids are one-line errors)."""
    from starfm.settings import parse_settings as parse

    return parse(cls, given or {}, f"figure {name} --settings", section=f"figures.{name}")


@dataclasses.dataclass(frozen=True)
class NoSettings:
    """Figures without settings."""


class FigureInputs:
    """The workflow files a figure reads, loaded on first use (paths or loaded objects)."""

    def __init__(self, dataset=None, model=None, predictions=None, metrics=None):
        self._dataset, self._model, self._predictions = dataset, model, predictions
        self.metrics_path = metrics

    @functools.cached_property
    def ds(self):
        from starfm.dataset import read_dataset
        if self._dataset is None:
            raise StarfmInputError("this figure needs --dataset")
        ds = read_dataset(self._dataset)
        if not ds.is_test.any():
            raise StarfmInputError(f"{ds.path}: the test split is empty")
        return ds

    @functools.cached_property
    def model(self):
        from starfm.inference import StarFM, check_vocabulary
        if self._model is None:
            raise StarfmInputError("this figure needs --model")
        model, source = self._model, self._model
        if isinstance(model, (str, Path)):
            model = StarFM.load(model, device="cpu")
        else:
            source = "the model"
        check_vocabulary(model, source)
        return model

    @functools.cached_property
    def predictions(self) -> dict:
        if self._predictions is None:
            raise StarfmInputError("this figure needs --predictions")
        pred = read_table(self._predictions)
        if "source_id" not in pred:
            raise StarfmInputError(f"{self._predictions}: has no column 'source_id'")
        if self._dataset is not None and not np.array_equal(pred["source_id"],
                                                            self.ds.source_id[self.ds.is_test]):
            raise StarfmInputError(f"{self._predictions}: its source_ids are not the test split "
                                   f"of {self.ds.path}; rerun evaluate")
        return pred

    def setting(self, name: str) -> dict | None:
        """Columns of ``settings/<name>`` in predictions.h5, or None when not evaluated."""
        import h5py
        self.predictions                   # reads and checks the file (source_ids vs the dataset)
        with h5py.File(self._predictions, "r") as f:
            if f"settings/{name}" not in f:
                return None
        return read_table(self._predictions, group=f"settings/{name}")

    def meta(self, names: list[str]) -> dict[str, np.ndarray]:
        return read_meta(self.ds, names)


def read_meta(ds, names: list[str]) -> dict[str, np.ndarray]:
    """Columns of dataset.h5's ``meta`` group (NaN-filled where a column is absent)."""
    import h5py
    with h5py.File(ds.path, "r") as f:
        have = list(f["meta"].keys()) if "meta" in f else []
    if not have:
        raise StarfmInputError(f"{ds.path}: has no group 'meta' (per-star context for figures)")
    present = [n for n in names if n in have]
    out = read_table(ds.path, present, group="meta")
    return {n: np.asarray(out[n], float) if n in out else np.full(len(ds.source_id), np.nan)
            for n in names}


def token_columns(values: np.ndarray, names: list[str]) -> np.ndarray:
    return np.asarray(values[:, tokens.index(names)], float)


def xp_flux(bp: np.ndarray, rp: np.ndarray, wavelength_nm=None) -> np.ndarray:
    """GaiaXPy calibrated flux of XP coefficients (the project's one coefficients-to-flux path)."""
    from starfm.extinction_curve import xp_flux as _xp_flux
    return _xp_flux(bp, rp, wavelength_nm)


def wavelength_nm() -> np.ndarray:
    from starfm.extinction_curve import XP_WAVELENGTH_NM
    return XP_WAVELENGTH_NM


def robust_scatter(x) -> float:
    from starfm.evaluate import robust_scatter as rs
    return rs(x)


def one_to_one(ax, fig, x, y, colour=None, colour_label=None, density: bool = False, text=None,
               cmap="viridis"):
    """Scatter (coloured by ``colour``) or log-density hexbin of y vs x, a 1:1 line and a text box."""
    from matplotlib.colors import LogNorm
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if colour is not None:
        ok &= np.isfinite(colour)
    if not ok.any():
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        return
    lo, hi = np.percentile(np.r_[x[ok], y[ok]], [0.5, 99.5])
    pad = 0.05 * (hi - lo if hi > lo else 1.0)
    lo, hi = lo - pad, hi + pad
    if density:
        hb = ax.hexbin(x[ok], y[ok], gridsize=40, extent=(lo, hi, lo, hi), norm=LogNorm(),
                       mincnt=1, cmap="Greys")
        fig.colorbar(hb, ax=ax, label="N stars per bin (log)")
    else:
        i = np.flatnonzero(ok)[subsample(ok.sum())]
        c = np.asarray(colour, float)[i] if colour is not None else "k"
        kw = {"vmax": np.nanpercentile(colour, 95)} if colour is not None else {}
        sc = ax.scatter(x[i], y[i], c=c, s=3, cmap=cmap, rasterized=True, **kw)
        if colour is not None:
            fig.colorbar(sc, ax=ax, label=colour_label)
    ax.plot([lo, hi], [lo, hi], "r--", lw=1)
    ax.set(xlim=(lo, hi), ylim=(lo, hi))
    if text:
        ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", fontsize=8,
                bbox=dict(fc="white", alpha=0.8, lw=0))


def not_available(ax, message: str):
    """A panel that says why it is empty."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=10,
            wrap=True, color="0.3")
    ax.set_xticks([])
    ax.set_yticks([])


def finite_float(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
