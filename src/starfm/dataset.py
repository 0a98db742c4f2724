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
from starfm.io import StarfmInputError, read_attrs, read_table


@dataclass
class Dataset:
    """``dataset.h5``: tokens in physical units, the split and the file's attributes."""
    path: Path
    source_id: np.ndarray
    values: np.ndarray      # (n, 120) physical token units, NaN = absent
    errors: np.ndarray      # (n, 120), 0 = unknown
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
