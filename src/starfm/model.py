"""The transformer foundation model (Leung & Bovy 2024; Zhang et al. 2026; SPEC §3).

One file, read top to bottom: a config dataclass (sizes are config, not code), the
non-linear token embedding, an attention module, encoder and decoder blocks, the
model, the context sampler and the loss.

Every token (one of the 121 of ``starfm.tokens.VOCABULARY``) is a kind ``k`` and a
standardised value ``x``; the embedding is ``GELU(w_k * x + b_k)``. The encoder does
self-attention over a star's context (at most ``context_max`` tokens, padding
masked); the decoder is queried by ``w_k`` of each requested token (identity, no
value) and cross-attends to the encoded context. Requests never attend to each
other, so the prediction for one request does not depend on which others are asked.
A head MLP maps each decoded request to a mean and a log-variance.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from starfm import tokens


@dataclass(frozen=True)
class ModelConfig:
    """Dimensions of the model; the defaults are the paper's (SPEC §3)."""

    n_tokens: int = len(tokens.VOCABULARY)
    d_model: int = 128
    n_heads: int = 16
    encoder_ff: tuple[int, ...] = (1024, 512)          # one encoder block per entry
    decoder_ff: tuple[int, ...] = (3096, 1548, 774)    # one decoder block per entry
    head_hidden: tuple[int, ...] = (3096, 1548, 774)   # head MLP -> (mean, log-variance)
    dropout: float = 0.1
    context_min: int = 5
    context_max: int = 64

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        fields = {f.name for f in dataclasses.fields(cls)}
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in fields}
        return cls(**d)


# `paper`: SPEC §3 exactly. `small`: trains on 2 CPU cores within the default workflow.
# Its head dimension is 16 (CPU attention kernels are slow for the paper's 8), and it has
# no dropout: CPU dropout costs ~40% of a step, and a short run over freshly drawn contexts
# every epoch is far from over-fitting (train and validation losses stay together).
SIZES: dict[str, ModelConfig] = {
    "paper": ModelConfig(),
    "small": ModelConfig(d_model=64, n_heads=4, encoder_ff=(256, 128), decoder_ff=(256, 128),
                         head_hidden=(128, 64), dropout=0.0),
}


def model_config(size: str) -> ModelConfig:
    if size not in SIZES:
        raise ValueError(f"unknown model size '{size}' (choose from {sorted(SIZES)})")
    return SIZES[size]


class TokenEmbedding(nn.Module):
    """Non-linear embedding GELU(w_k x + b_k); ``w_k`` alone is token k's request vector."""

    def __init__(self, n_tokens: int, d_model: int):
        super().__init__()
        # unit-variance pre-activations for standardised values, as nn.Embedding's N(0, 1)
        self.weight = nn.Parameter(torch.randn(n_tokens, d_model))
        self.bias = nn.Parameter(torch.randn(n_tokens, d_model))

    def forward(self, token: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.weight[token] * value.unsqueeze(-1) + self.bias[token])

    def request(self, token: torch.Tensor) -> torch.Tensor:
        return self.weight[token]


class MultiHeadAttention(nn.Module):
    """Multi-head attention whose keys may be padded (``key_pad`` True = ignore)."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not a multiple of n_heads {n_heads}")
        self.n_heads = n_heads
        self.q = nn.Linear(d_model, d_model)
        self.kv = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, query, context, key_pad, return_weights: bool = False):
        b, lq, d = query.shape
        h = self.n_heads
        q = self.q(query).view(b, lq, h, d // h).transpose(1, 2)
        k, v = self.kv(context).view(b, -1, 2, h, d // h).permute(2, 0, 3, 1, 4)
        keep = ~key_pad[:, None, None, :]                      # (b, 1, 1, lk) broadcast over heads
        if not return_weights:
            # no dropout on attention weights: the paper drops out dense layers only
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
            weights = None
        else:  # explicit path for attention maps (figures); same result
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // h)
            weights = scores.masked_fill(~keep, float("-inf")).softmax(-1)
            y = weights @ v
        return self.out(y.transpose(1, 2).reshape(b, lq, d)), weights


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, hidden: int, dropout: float):
        super().__init__(nn.Linear(d_model, hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, d_model), nn.Dropout(dropout))


class EncoderBlock(nn.Module):
    """Self-attention + feed-forward, each followed by Add & Norm (post-norm, as the paper)."""

    def __init__(self, cfg: ModelConfig, hidden: int):
        super().__init__()
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg.d_model, hidden, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, pad):
        x = self.norm1(x + self.drop(self.attn(x, x, pad)[0]))
        return self.norm2(x + self.ff(x))


class DecoderBlock(nn.Module):
    """Cross-attention of the requests to the encoded context + feed-forward, Add & Norm."""

    def __init__(self, cfg: ModelConfig, hidden: int):
        super().__init__()
        self.attn = MultiHeadAttention(cfg.d_model, cfg.n_heads)
        self.norm1, self.norm2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.ff = FeedForward(cfg.d_model, hidden, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, q, memory, pad, return_weights: bool = False):
        a, weights = self.attn(q, memory, pad, return_weights)
        q = self.norm1(q + self.drop(a))
        return self.norm2(q + self.ff(q)), weights


class StarModel(nn.Module):
    """Encoder-decoder over tokens: context (token, value) pairs in, (mean, log-variance) out."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = TokenEmbedding(cfg.n_tokens, cfg.d_model)
        self.encoder = nn.ModuleList(EncoderBlock(cfg, h) for h in cfg.encoder_ff)
        self.decoder = nn.ModuleList(DecoderBlock(cfg, h) for h in cfg.decoder_ff)
        layers, width = [], cfg.d_model
        for h in cfg.head_hidden:
            layers += [nn.Linear(width, h), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = h
        self.head = nn.Sequential(*layers, nn.Linear(width, 2))

    def forward(self, ctx_token, ctx_value, ctx_pad, req_token, return_attention: bool = False):
        """ctx_token (b, l) long, ctx_value (b, l) standardised, ctx_pad (b, l) bool (True = padding),
        req_token (b, r) long. Returns mean (b, r), log_var (b, r) in standardised units
        [and the last decoder block's cross-attention weights (b, heads, r, l)].

        A star whose context is all padding gets an arbitrary (finite) answer: callers mask it.
        """
        # A row with nothing to attend to would give NaN (softmax over -inf); let it attend to
        # its first (padding) slot instead so gradients stay finite, and let callers discard it.
        empty = ctx_pad.all(dim=1, keepdim=True)
        first = torch.zeros_like(ctx_pad)
        first[:, :1] = True
        pad = ctx_pad & ~(empty & first)
        x = self.embed(ctx_token, torch.nan_to_num(ctx_value))
        for block in self.encoder:
            x = block(x, pad)
        q = self.embed.request(req_token)
        weights = None
        for block in self.decoder:
            q, weights = block(q, x, pad, return_attention)
        out = self.head(q)
        mean, log_var = out[..., 0], out[..., 1]
        return (mean, log_var, weights) if return_attention else (mean, log_var)


def gaussian_nll(y, mean, log_var, known_err, weight=None):
    """Mean over requests of (y-ŷ)²/(2(σ_k²+σ_p²)) + ½ ln(σ_k²+σ_p²) (SPEC §3), in float32.

    ``weight`` (same shape, bool) masks padded requests.
    """
    y, mean, log_var, known_err = (t.float() for t in (y, mean, log_var, known_err))
    if weight is not None:  # a padded request's y may be NaN: zero it, or NaN leaks into gradients
        y = torch.where(weight, y, torch.zeros_like(y))
    var = known_err.square() + log_var.exp()
    loss = (y - mean).square() / (2 * var) + 0.5 * var.log()
    if weight is None:
        return loss.mean()
    loss = torch.where(weight, loss, torch.zeros_like(loss))
    return loss.sum() / weight.sum().clamp(min=1)


# ---- what the sampler is given: per-token tensors of a training recipe --------------------------

# Tokens whose request probability ``label_weight`` multiplies (the catalogue labels).
LABEL_TOKENS = ("teff", "logg", "m_h", "alpha_m", "mass", "ln_age")


def context_priority() -> torch.Tensor:
    """Token order of a spectra-in context (``spectra_context_fraction``): colours, J-H,
    pseudo-luminosity and ln E(B-V) first, then XP coefficients by increasing order
    (BP and RP interleaved); labels never."""
    p = torch.zeros(len(tokens.VOCABULARY))
    for band in (tokens.XP_BP, tokens.XP_RP):
        p[tokens.index(band)] = 1.0 + torch.arange(len(band), dtype=torch.float32)
    p[tokens.index(list(LABEL_TOKENS))] = -1.0
    return p


def context_keep(keep_other: float, keep_l_ebv: float, keep_label: float) -> torch.Tensor:
    """Probability that a spectra-in context offers each token: colours and J-H ``keep_other``,
    pseudo-luminosity and ln E(B-V) ``keep_l_ebv``, XP always, labels ``keep_label``."""
    k = torch.full((len(tokens.VOCABULARY),), keep_other)
    k[tokens.index(["pseudo_luminosity", "ln_ebv"])] = keep_l_ebv
    k[tokens.index(tokens.XP_BP + tokens.XP_RP)] = 1.0
    k[tokens.index(list(LABEL_TOKENS))] = keep_label
    return k


def context_anchor() -> torch.Tensor:
    """Tokens a labels-in context (``label_context_fraction``) starts with: the five labels
    and ln E(B-V), the extinction-curve figure's inputs."""
    a = torch.zeros(len(tokens.VOCABULARY), dtype=torch.bool)
    a[tokens.index(list(LABEL_TOKENS) + ["ln_ebv"])] = True
    return a


def request_weight(label_weight: float, luminosity_weight: float,
                   never_request=()) -> torch.Tensor:
    """Request weight of each token: labels ``label_weight``, the pseudo-luminosity
    ``luminosity_weight``, ``never_request`` 0, the rest 1."""
    w = torch.ones(len(tokens.VOCABULARY))
    w[tokens.index(list(LABEL_TOKENS))] = label_weight
    w[tokens.TOKEN_INDEX["pseudo_luminosity"]] = luminosity_weight
    w[tokens.index(list(never_request))] = 0.0
    return w


def sample_context(present: torch.Tensor, context_min: int, context_max: int,
                   generator: torch.Generator | None = None,
                   priority: torch.Tensor | None = None, priority_fraction: float = 0.0,
                   priority_keep: torch.Tensor | None = None, priority_full_length: float = 1.0,
                   anchor: torch.Tensor | None = None, anchor_fraction: float = 0.0):
    """Draw each star's context: a random number in [context_min, context_max] of its present tokens.

    present (b, n_tokens) bool. Vectorised: random keys (absent tokens sort last) and a top-k.
    Returns token (b, l) long, pad (b, l) bool (True = slot unused), with l <= context_max the
    longest context in the batch. A star with fewer present tokens than drawn uses all of them.

    With ``priority`` (n_tokens,) float, a random share ``priority_fraction`` of the stars
    instead take up to ``context_max`` of their present tokens in increasing ``priority``
    (ties broken at random; ``inf`` = never), each token offered with probability
    ``priority_keep`` (n_tokens,; default 1), as many as fit with probability
    ``priority_full_length``, else the usual random number: a "spectra in" context such as the evaluation's
    many low-order XP coefficients + photometry, which uniform draws of 5-64 of ~121 tokens
    almost never show the model.

    With ``anchor`` (n_tokens,) bool, a further random share ``anchor_fraction`` of the stars
    (never the same as the spectra-in ones) take their present ``anchor`` tokens first, then
    random others, the usual random 5-64 in all: "labels in" contexts (labels + ln E(B-V) ->
    spectra, the direction the extinction-curve figure asks), which uniform draws give with
    all six tokens almost never.
    """
    b, n = present.shape
    dev = present.device
    keys = torch.rand(b, n, generator=generator, device=dev)
    n_draw = torch.randint(context_min, context_max + 1, (b,), generator=generator, device=dev)
    usable = present
    use_priority = priority is not None and priority_fraction > 0
    use_anchor = anchor is not None and anchor_fraction > 0
    if use_priority or use_anchor:
        u = torch.rand(b, 1, generator=generator, device=dev)
        chosen = u < (priority_fraction if use_priority else 0.0)
    if use_anchor:
        anchored = ~chosen & (u < (priority_fraction if use_priority else 0.0) + anchor_fraction)
        keys = torch.where(anchored & anchor.to(dev)[None, :], keys - 2.0, keys)
    if use_priority:
        prio = priority.to(dev)[None, :]
        allowed = torch.isfinite(prio)
        if priority_keep is not None:
            allowed = allowed & (torch.rand(b, n, generator=generator, device=dev)
                                 < priority_keep.to(dev)[None, :])
        keys = torch.where(chosen, torch.where(allowed, prio, 0.0) + 1e-3 * keys, keys)
        usable = present & (allowed | ~chosen)
        full = torch.rand(b, generator=generator, device=dev) < priority_full_length
        n_draw = torch.where(chosen[:, 0] & full, context_max, n_draw)
    keys = keys.masked_fill(~usable, float("inf"))          # absent tokens: never before present ones
    k = min(context_max, n)
    token = keys.topk(k, dim=1, largest=False, sorted=True).indices
    n_ctx = torch.minimum(n_draw, usable.sum(1))
    length = int(n_ctx.max().clamp(min=1))
    token = token[:, :length]
    pad = torch.arange(length, device=dev)[None, :] >= n_ctx[:, None]
    return token, pad


def sample_requests(present: torch.Tensor, n_requests: int, token_weight: torch.Tensor,
                    generator: torch.Generator | None = None):
    """Draw ``n_requests`` distinct present tokens per star, with probability ∝ ``token_weight``.

    Weighted sampling without replacement by exponential races (Efraimidis & Spirakis 2006):
    key = Exp(1)/w, smallest keys win; absent or zero-weight tokens never win.
    Returns token (b, r) long and valid (b, r) bool (False where a star has fewer candidates).
    """
    u = torch.rand(present.shape, generator=generator, device=present.device)
    w = token_weight.to(present.device)[None, :].expand_as(u)
    ok = present & (w > 0)
    keys = (-torch.log1p(-u)) / w.clamp(min=1e-30)
    keys = keys.masked_fill(~ok, float("inf"))
    r = min(n_requests, present.shape[1])
    token = keys.topk(r, dim=1, largest=False, sorted=True).indices
    valid = torch.arange(r, device=present.device)[None, :] < ok.sum(1, keepdim=True)
    return token, valid
