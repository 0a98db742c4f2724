"""Load a trained model (``model.pt`` of the train stage) and ask it questions.

Evaluation and figures use exactly this API::

    fm = StarFM.load("results/model/model.pt")
    mean, std = fm.predict(values, inputs=tokens.XP_BP[:32] + tokens.XP_RP[:32],
                           outputs=["mass", "ln_age"])

``values`` are physical token units (as ``dataset.h5``), NaN = absent; predictions come
back in the same units, ``std`` being the model's predicted sigma (σ_p) de-standardised.
The model file carries its configuration, vocabulary and standardisation, so no
dataset is needed. Inference is deterministic: eval mode, no sampling — each star's
context is its first ``context_max`` present tokens in the order of ``inputs``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from starfm.errors import StarfmInputError
from starfm.model import ModelConfig, StarModel

MODEL_FORMAT = "starfm-model-1"


def _read_model_file(path: Path, device):
    """``torch.load`` of a model file; any failure is one line naming the file (never torch's
    multi-line advice about ``weights_only``)."""
    size = path.stat().st_size
    if size == 0:
        raise StarfmInputError(f"{path}: not a model file (the file is empty)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":   # torch.save writes a zip archive
        raise StarfmInputError(f"{path}: not a model file (not a PyTorch archive: another kind "
                               f"of file, {size} bytes)")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:   # torch raises RuntimeError, UnpicklingError, EOFError, ...
        text = str(exc).lower()
        reason = ("holds objects other than tensors and plain values" if "weights only" in text
                  else "corrupt or truncated PyTorch archive")
        raise StarfmInputError(f"{path}: not a readable model file ({reason})") from None


def check_vocabulary(model, source) -> None:
    """A one-line error naming ``source`` unless ``model`` was trained on the token vocabulary
    of :mod:`starfm.tokens` (the one a dataset.h5 is built with)."""
    from starfm import tokens
    vocab = list(getattr(model, "vocabulary", []))
    if vocab != tokens.VOCABULARY:
        diff = next((i for i, (a, b) in enumerate(zip(vocab, tokens.VOCABULARY)) if a != b),
                    min(len(vocab), len(tokens.VOCABULARY)))
        raise StarfmInputError(f"{source}: the model was trained with a different vocabulary "
                               f"({len(vocab)} tokens, first difference at position {diff}); "
                               f"retrain it on this dataset")


class StarFM:
    """A trained foundation model with its vocabulary and standardisation."""

    def __init__(self, model: StarModel, vocabulary: Sequence[str], token_median, token_mad_std,
                 info: dict | None = None, training: dict | None = None):
        self.model = model.eval()
        self.vocabulary: list[str] = list(vocabulary)
        self.token_index = {name: i for i, name in enumerate(self.vocabulary)}
        self.token_median = np.asarray(token_median, np.float64)
        self.token_mad_std = np.asarray(token_mad_std, np.float64)
        self.info = info or {}
        # what it was trained on (starfm.dataset.training_records; {} for model files written
        # before starfm stored it: then tokens_seen falls back on the standardisation)
        self.training = training or {}
        self.device = next(model.parameters()).device

    @classmethod
    def load(cls, path, device="cpu") -> "StarFM":
        """Load ``model.pt`` written by ``python -m starfm train`` onto ``device`` (cpu, cuda, auto)."""
        path = Path(path)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if not path.exists():
            raise StarfmInputError(f"{path}: model file not found")
        state = _read_model_file(path, device)
        if not isinstance(state, dict) or state.get("format") != MODEL_FORMAT:
            raise StarfmInputError(f"{path}: not a starfm model (expected format {MODEL_FORMAT}; "
                                   "a training checkpoint is not a model)")
        try:
            model = StarModel(ModelConfig.from_dict(state["model_config"]))
            model.load_state_dict(state["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise StarfmInputError(f"{path}: a starfm model file with broken contents ({first})") from None
        info = {k: state[k] for k in ("size", "train_config", "history") if k in state}
        try:
            training = json.loads(state.get("training", "{}"))
        except (TypeError, ValueError):
            raise StarfmInputError(f"{path}: a starfm model file with a broken 'training' record") from None
        return cls(model.to(device), state["vocabulary"], state["token_median"].cpu().numpy(),
                   state["token_mad_std"].cpu().numpy(), info, training)

    @property
    def tokens_seen(self) -> list[str]:
        """Tokens with a value in the training set (the model never learned the others, as input
        or output). A model file without the record (older starfm): the tokens whose
        standardisation is not exactly median 0 / mad_std 1, what assembly gives a token without
        any train value (a seen token with those exact values would be missed: none in practice)."""
        counts = self.training.get("token_counts")
        if counts is not None:
            return [t for t in self.vocabulary if counts.get(t, 0) > 0]
        return [t for i, t in enumerate(self.vocabulary)
                if not (self.token_median[i] == 0.0 and self.token_mad_std[i] == 1.0)]

    @property
    def context_max(self) -> int:
        return self.model.cfg.context_max

    def _indices(self, names, what: str) -> np.ndarray:
        if isinstance(names, str):
            names = [names]
        unknown = [n for n in names if n not in self.token_index]
        if unknown:
            raise ValueError(f"unknown {what} token(s) {unknown}; see StarFM.vocabulary")
        seen: dict[str, None] = dict.fromkeys(names)     # drop repeats, keep order
        return np.array([self.token_index[n] for n in seen], dtype=np.int64)

    def _context(self, values: np.ndarray, in_idx: np.ndarray):
        """First ``context_max`` present tokens of each row, in ``in_idx`` order (vectorised)."""
        x = (values[:, in_idx] - self.token_median[in_idx]) / self.token_mad_std[in_idx]
        present = np.isfinite(x)
        m = len(in_idx)
        rank = np.where(present, 0, m) + np.arange(m)            # present first, then input order
        perm = np.argsort(rank, axis=1, kind="stable")
        length = max(1, min(self.context_max, int(present.sum(1).max(initial=0))))
        perm = perm[:, :length]
        token = in_idx[perm]
        value = np.take_along_axis(x, perm, 1)
        pad = ~np.take_along_axis(present, perm, 1)
        return token, value, pad

    def _check_values(self, values, errors):
        values = np.asarray(values, np.float64)
        if values.ndim != 2 or values.shape[1] != len(self.vocabulary):
            raise ValueError(f"values must be (n, {len(self.vocabulary)}); got {values.shape}")
        if errors is not None and np.shape(errors) != values.shape:
            raise ValueError(f"errors must have the shape of values {values.shape}; got {np.shape(errors)}")
        return values

    @torch.no_grad()
    def predict(self, values, errors=None, inputs=None, outputs=("mass",), batch_size=4096):
        """Predict ``outputs`` for each star from its ``inputs`` tokens.

        values (n, 121) physical units (NaN = absent); errors (n, 121) or None — accepted for
        symmetry with the dataset, unused: the model embeds values only (Leung & Bovy 2024).
        inputs: token names allowed as context (default all), used in the given order, at most
        ``context_max`` present ones per star. outputs: token names.
        Returns (mean, std), each (n, len(outputs)) float64 in physical token units; std is the
        predicted σ_p. A star with none of ``inputs`` present gets NaN.
        """
        values = self._check_values(values, errors)
        in_idx = self._indices(self.vocabulary if inputs is None else inputs, "input")
        out_idx = self._indices(outputs, "output")
        n = len(values)
        mean = np.full((n, len(out_idx)), np.nan)
        std = np.full((n, len(out_idx)), np.nan)
        req = torch.as_tensor(out_idx, device=self.device)
        for start in range(0, n, batch_size):
            sl = slice(start, start + batch_size)
            token, value, pad = self._context(values[sl], in_idx)
            token_t = torch.as_tensor(token, device=self.device)
            mu, log_var = self.model(token_t, torch.as_tensor(value, dtype=torch.float32, device=self.device),
                                     torch.as_tensor(pad, device=self.device),
                                     req.expand(len(token), -1))
            mu, sig = mu.double().cpu().numpy(), (0.5 * log_var.double()).exp().cpu().numpy()
            empty = pad.all(1)
            mu[empty], sig[empty] = np.nan, np.nan
            mean[sl] = mu * self.token_mad_std[out_idx] + self.token_median[out_idx]
            std[sl] = sig * self.token_mad_std[out_idx]
        return mean, std

    @torch.no_grad()
    def cross_attention(self, values, inputs=None, outputs=("mass",)):
        """Cross-attention of each output request to each input token (last decoder block, mean over heads).

        Returns (weights (n, len(outputs), len(inputs)), input names); an input absent for a star
        (or beyond its first ``context_max``) gets weight 0. For figure 17; small n only.
        """
        values = self._check_values(values, None)
        in_idx = self._indices(self.vocabulary if inputs is None else inputs, "input")
        out_idx = self._indices(outputs, "output")
        token, value, pad = self._context(values, in_idx)
        req = torch.as_tensor(out_idx, device=self.device).expand(len(token), -1)
        _, _, w = self.model(torch.as_tensor(token, device=self.device),
                             torch.as_tensor(value, dtype=torch.float32, device=self.device),
                             torch.as_tensor(pad, device=self.device), req, return_attention=True)
        w = w.mean(1).double().cpu().numpy()                          # (n, r, l)
        w = np.where(pad[:, None, :], 0.0, w)
        out = np.zeros((len(values), len(out_idx), len(in_idx)))
        position = np.searchsorted(np.sort(in_idx), token)             # token -> column of inputs
        col = np.argsort(in_idx)[position]
        rows = np.arange(len(values))[:, None, None]
        np.add.at(out, (rows, np.arange(len(out_idx))[None, :, None], col[:, None, :]), w)
        return out, [self.vocabulary[i] for i in in_idx]
