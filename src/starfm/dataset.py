"""The one reader of ``dataset.h5`` (written by the assemble stage; docs/data_products.md).

Training, the baseline, evaluation, figures and inference all read the file through
:func:`read_dataset`, so every consumer gets the same checks: the token vocabulary, the shapes
of ``values``/``errors``, no infinities (absent is NaN), no negative errors, the
standardisation attributes, at least one row.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from starfm import tokens
from starfm.errors import StarfmInputError
from starfm.tables import read_attrs, read_table


@dataclass
class Dataset:
    """``dataset.h5``: tokens in physical units, the split and the file's attributes."""
    path: Path
    source_id: np.ndarray
    values: np.ndarray      # (n, 121) physical token units, NaN = absent
    errors: np.ndarray      # (n, 121), 0 = unknown
    is_test: np.ndarray     # (n,) bool
    vocabulary: list[str]
    attrs: dict

    def column(self, name: str) -> np.ndarray:
        return self.values[:, tokens.TOKEN_INDEX[name]]

    def error(self, name: str) -> np.ndarray:
        return self.errors[:, tokens.TOKEN_INDEX[name]]

    @property
    def token_median(self) -> np.ndarray:
        return np.asarray(self.attrs["token_median"], np.float64)

    @property
    def token_mad_std(self) -> np.ndarray:
        return np.asarray(self.attrs["token_mad_std"], np.float64)


def read_dataset(path: str | Path) -> Dataset:
    """Read and check ``dataset.h5``; any problem is one :class:`StarfmInputError` naming the file."""
    path = Path(path)
    cols = read_table(path, ["source_id", "values", "errors", "is_test"])
    try:
        attrs = read_attrs(path)
    except OSError as exc:
        raise StarfmInputError(f"{path}: cannot read attributes ({exc})") from exc
    missing = [k for k in ("vocabulary", "token_median", "token_mad_std") if k not in attrs]
    if missing:
        raise StarfmInputError(f"{path}: has no attribute(s) {missing} (not a starfm dataset.h5?)")
    vocab = [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(attrs["vocabulary"])]
    if vocab != tokens.VOCABULARY:
        raise StarfmInputError(f"{path}: its vocabulary ({len(vocab)} tokens) differs from "
                               f"starfm.tokens.VOCABULARY; rebuild it with this starfm version")
    values = np.asarray(cols["values"], dtype=np.float32)
    errors = np.asarray(cols["errors"], dtype=np.float32)
    n = len(cols["source_id"])
    if n == 0:
        raise StarfmInputError(f"{path}: the table is empty")
    if values.shape != (n, len(vocab)) or errors.shape != values.shape:
        raise StarfmInputError(f"{path}: 'values'/'errors' have shapes {values.shape}/{errors.shape},"
                               f" expected ({n}, {len(vocab)})")
    if np.isinf(values).any() or not np.isfinite(np.nan_to_num(errors)).all():
        raise StarfmInputError(f"{path}: 'values'/'errors' hold infinities (absent must be NaN)")
    if (np.nan_to_num(errors) < 0).any():
        raise StarfmInputError(f"{path}: 'errors' has negative entries")
    for key in ("token_median", "token_mad_std"):
        if np.shape(attrs[key]) != (len(vocab),):
            raise StarfmInputError(f"{path}: attribute '{key}' has shape {np.shape(attrs[key])}, "
                                   f"expected ({len(vocab)},)")
    return Dataset(path, np.asarray(cols["source_id"], dtype=np.int64), values, errors,
                   np.asarray(cols["is_test"], dtype=bool), vocab, attrs)


# ---- what a model trained on this file has seen (stored in model.pt by the train stage) ------
# the training giants' coverage: the central 99 % (0.5-99.5 percentiles) of the train split of
# each quantity; ``starfm predict`` flags a star outside any of them (DistMass BITMASK 2). The
# 1 % tails keep a few outliers of the training set from stretching the box; measured on the
# held-out giants of the model's own population (tests/test_predict.py) few are flagged.
COVERAGE_PERCENTILES = (0.5, 99.5)
# inputs compared with the star's own value ("phot_g_mean_mag": Gaia G, from the meta group),
# outputs with the model's prediction (token units: ln_age, not age)
COVERAGE_INPUTS = ("phot_g_mean_mag", "bp_rp", "j_k")
COVERAGE_OUTPUTS = ("teff", "logg", "m_h", "alpha_m", "mass", "ln_age")


def training_records(ds: Dataset) -> dict:
    """What the train split of ``ds`` holds, as plain JSON-able values: ``cuts`` (the cuts it was
    assembled with, the attribute ``cuts``; None if absent), ``token_counts`` (token -> number of
    train stars with a value: a token with 0 was never seen), ``coverage`` (quantity -> [lo, hi],
    the :data:`COVERAGE_PERCENTILES` of its train values; G over stars with an XP token) and
    ``coverage_percentiles``."""
    import json

    train = ~ds.is_test
    values = ds.values[train]
    present = np.isfinite(values)
    counts = present.sum(0)
    cuts = ds.attrs.get("cuts")      # assemble writes JSON text (CutSettings.to_json)
    try:
        cuts = json.loads(cuts) if isinstance(cuts, str) else cuts
    except json.JSONDecodeError:
        cuts = None
    cuts = cuts if isinstance(cuts, dict) else None
    columns = {name: ds.column(name)[train] for name in COVERAGE_INPUTS[1:] + COVERAGE_OUTPUTS}
    import h5py
    with h5py.File(ds.path, "r") as f:
        if "meta" in f and "phot_g_mean_mag" in f["meta"]:
            g = np.asarray(f["meta"]["phot_g_mean_mag"][:], np.float64)[train]
            columns["phot_g_mean_mag"] = np.where(present[:, :2 * tokens.N_XP].any(1), g, np.nan)
    coverage = {}
    for name, col in columns.items():
        col = np.asarray(col, np.float64)
        col = col[np.isfinite(col)]
        if len(col):
            coverage[name] = [float(v) for v in np.percentile(col, COVERAGE_PERCENTILES)]
    return {"cuts": cuts, "token_counts": {t: int(c) for t, c in zip(ds.vocabulary, counts)},
            "coverage": coverage, "coverage_percentiles": list(COVERAGE_PERCENTILES),
            "n_train": int(train.sum())}
