"""The model: shapes, padding masks, request independence, the loss, the samplers."""
from __future__ import annotations

import ast
import inspect
import math
import textwrap

import pytest
import torch

from starfm import model as M
from starfm.tokens import TOKEN_INDEX, VOCABULARY

from helpers import TINY_NET as TINY

N_TOK = len(VOCABULARY)


def _inputs(b=6, length=10, r=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    token = torch.stack([torch.randperm(N_TOK, generator=g)[:length] for _ in range(b)])
    value = torch.randn(b, length, generator=g)
    pad = torch.arange(length)[None, :] >= torch.randint(1, length + 1, (b,), generator=g)[:, None]
    req = torch.randint(0, N_TOK, (b, r), generator=g)
    return token, value, pad, req


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return M.StarModel(TINY).eval()


def test_sizes_and_shapes():
    paper = M.model_config("paper")
    # SPEC §3 numbers, so that a change of the paper configuration is deliberate
    assert (paper.d_model, paper.n_heads, paper.encoder_ff, paper.decoder_ff, paper.dropout,
            paper.context_min, paper.context_max) == (128, 16, (1024, 512), (3096, 1548, 774), 0.1, 5, 64)
    with pytest.raises(ValueError, match="unknown model size"):
        M.model_config("huge")
    for cfg in (M.model_config("small"), TINY):
        torch.manual_seed(0)
        net = M.StarModel(cfg)
        token, value, pad, req = _inputs()
        mean, log_var = net(token, value, pad, req)
        assert mean.shape == log_var.shape == (6, 3)
        assert torch.isfinite(mean).all() and torch.isfinite(log_var).all()
    assert M.ModelConfig.from_dict(paper.to_dict()) == paper


def test_padding_is_ignored(tiny_model):
    token, value, pad, req = _inputs()
    mean, log_var = tiny_model(token, value, pad, req)
    g = torch.Generator().manual_seed(1)
    # padded slots: any value, any token, even NaN -> same answer
    value2 = torch.where(pad, torch.randn(value.shape, generator=g) * 100, value)
    token2 = torch.where(pad, torch.randint(0, N_TOK, token.shape, generator=g), token)
    for v, t in ((value2, token2), (torch.where(pad, torch.nan, value), token)):
        m2, l2 = tiny_model(t, v, pad, req)
        torch.testing.assert_close(m2, mean)
        torch.testing.assert_close(l2, log_var)
    # ... while a real (unpadded) value does matter
    value3 = value.clone()
    value3[:, 0] += 3.0
    assert not torch.allclose(tiny_model(token, value3, pad, req)[0], mean)


def test_requests_do_not_interact(tiny_model):
    token, value, pad, req = _inputs(r=5)
    mean, _ = tiny_model(token, value, pad, req)
    alone, _ = tiny_model(token, value, pad, req[:, 2:3])
    torch.testing.assert_close(alone[:, 0], mean[:, 2])


def test_empty_context_gives_finite_output(tiny_model):
    token, value, pad, req = _inputs()
    pad[0] = True
    mean, log_var = tiny_model(token, value, pad, req)
    assert torch.isfinite(mean).all() and torch.isfinite(log_var).all()


def test_attention_map_path_matches_fast_path(tiny_model):
    token, value, pad, req = _inputs()
    mean, log_var = tiny_model(token, value, pad, req)
    m2, l2, w = tiny_model(token, value, pad, req, return_attention=True)
    torch.testing.assert_close(m2, mean)
    assert w.shape == (6, TINY.n_heads, 3, token.shape[1])
    torch.testing.assert_close(w.sum(-1), torch.ones(6, TINY.n_heads, 3))
    assert (w.masked_select(pad[:, None, None, :].expand_as(w)) == 0).all()


def test_loss_matches_hand_computation():
    y = torch.tensor([[1.0, 2.0], [0.5, float("nan")]])
    mean = torch.tensor([[0.0, 2.5], [0.5, 9.0]])
    log_var = torch.tensor([[0.0, math.log(0.25)], [math.log(4.0), 0.0]])
    err = torch.tensor([[0.0, 0.5], [1.0, 0.0]])
    valid = torch.tensor([[True, True], [True, False]])
    # by hand: var = err^2 + exp(log_var)
    terms = [1.0 / 2 + 0.5 * math.log(1.0),              # var 1
             0.25 / (2 * 0.5) + 0.5 * math.log(0.5),     # var 0.25 + 0.25
             0.0 + 0.5 * math.log(5.0)]                  # var 1 + 4
    expected = sum(terms) / 3
    assert M.gaussian_nll(y, mean, log_var, err, valid).item() == pytest.approx(expected, rel=1e-6)
    # the NaN target of the padded request must not reach the gradient either
    mean.requires_grad_(True)
    M.gaussian_nll(y, mean, log_var, err, valid).backward()
    assert torch.isfinite(mean.grad).all() and mean.grad[1, 1] == 0


def _present(b=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    n_present = torch.randint(1, 121, (b,), generator=g)
    n_present[:500] = 120                         # full stars to test the 5-64 law
    keys = torch.rand(b, N_TOK, generator=g)
    rank = keys.argsort(1).argsort(1)
    return rank < n_present[:, None]


def test_context_sampler():
    present = _present()
    g = torch.Generator().manual_seed(3)
    token, pad = M.sample_context(present, 5, 64, g)
    n_ctx = (~pad).sum(1)
    n_present = present.sum(1)
    assert token.shape[1] <= 64
    assert ((n_ctx >= torch.clamp(n_present, max=5)) & (n_ctx <= 64) & (n_ctx <= n_present)).all()
    assert (n_ctx[n_present >= 5] >= 5).all()
    # only present tokens, each at most once
    chosen_present = present.gather(1, token)
    assert chosen_present[~pad].all()
    s = torch.where(pad, -1 - torch.arange(token.shape[1])[None, :], token).sort(1).values
    assert (s[:, 1:] != s[:, :-1]).all()
    # not degenerate: full stars take (nearly) every count 5..64, mean ~34.5
    full = n_ctx[:500]
    assert full.unique().numel() >= 50                    # 60 possible values, 500 draws
    assert abs(full.float().mean().item() - 34.5) < 2.5   # sd of the mean 17.3/sqrt(500) = 0.8
    # every present token gets picked (tokens are chosen uniformly)
    counts = torch.zeros(N_TOK).index_add_(0, token[:500][~pad[:500]], torch.ones(int((~pad[:500]).sum())))
    assert (counts > 0).all()
    # deterministic given the generator, different with another seed
    t2, p2 = M.sample_context(present, 5, 64, torch.Generator().manual_seed(3))
    assert torch.equal(t2, token) and torch.equal(p2, pad)
    t3, _ = M.sample_context(present, 5, 64, torch.Generator().manual_seed(4))
    assert not torch.equal(t3[:, :5], token[:, :5])


def test_spectra_in_contexts_follow_the_priority():
    present = _present()
    prio = torch.arange(N_TOK, dtype=torch.float32)          # token k: priority k
    prio[TOKEN_INDEX["mass"]] = float("inf")               # never
    prio[TOKEN_INDEX["teff"]] = -1.0                       # first, when offered
    keep = torch.ones(N_TOK)
    keep[TOKEN_INDEX["teff"]] = 0.5
    g = torch.Generator().manual_seed(5)
    token, pad = M.sample_context(present, 5, 64, g, prio, 1.0, keep)
    n_ctx, n_present = (~pad).sum(1), present.sum(1)
    assert present.gather(1, token)[~pad].all()
    assert not (token[~pad] == TOKEN_INDEX["mass"]).any()
    # filled to 64 (or all usable tokens), lowest priority first: a sorted row of priorities
    usable = present.clone()
    usable[:, TOKEN_INDEX["mass"]] = False
    assert (n_ctx[usable.sum(1) >= 65] == 64).all()        # 65: teff may be held back
    p = torch.where(pad, torch.inf, prio[token])
    assert (p[:, 1:] >= p[:, :-1]).all()
    # teff offered in about half of the stars that have it (binomial sd 0.03 at ~250 stars)
    has = present[:, TOKEN_INDEX["teff"]]
    rate = (token == TOKEN_INDEX["teff"]).any(1)[has].float().mean().item()
    assert 0.35 < rate < 0.65
    # a share of 0 leaves the uniform sampler as it was; a share of 0.5 mixes both kinds
    ref = M.sample_context(present, 5, 64, torch.Generator().manual_seed(3))
    same = M.sample_context(present, 5, 64, torch.Generator().manual_seed(3), prio, 0.0, keep)
    assert torch.equal(ref[0], same[0]) and torch.equal(ref[1], same[1])
    token, pad = M.sample_context(present, 5, 64, torch.Generator().manual_seed(6), prio, 0.5)
    p = torch.where(pad, torch.inf, prio[token])
    ordered = (p[:, 1:] >= p[:, :-1]).all(1) & ((~pad).sum(1) == 64)
    assert 0.35 < ordered[present.sum(1) >= 100].float().mean().item() < 0.65
    # with priority_full_length 0 the spectra-in contexts keep the random 5-64 length
    _, pad = M.sample_context(present, 5, 64, torch.Generator().manual_seed(7), prio, 1.0,
                              priority_full_length=0.0)
    assert (~pad).sum(1)[present.sum(1) >= 64].float().mean().item() < 40   # ~34.5, not 64


def test_labels_in_contexts_start_with_the_anchor_tokens():
    present = torch.ones(4000, N_TOK, dtype=torch.bool)
    present[::2, TOKEN_INDEX["mass"]] = False             # an absent anchor is simply skipped
    anchor = torch.zeros(N_TOK, dtype=torch.bool)
    anchor[[TOKEN_INDEX[t] for t in ("teff", "logg", "m_h", "mass", "ln_age", "ln_ebv")]] = True
    prio = torch.arange(N_TOK, dtype=torch.float32)
    token, pad = M.sample_context(present, 5, 64, torch.Generator().manual_seed(8), prio, 0.3,
                                  anchor=anchor, anchor_fraction=0.4)
    n_anchor = (anchor[token] & ~pad).sum(1)
    n_have = anchor[None, :].logical_and(present).sum(1)
    long = (~pad).sum(1) >= 6
    full = (n_anchor == n_have) & long
    # 40 % of the stars carry all their present anchors (random contexts: almost never), and
    # those come first in the context; the spectra-in share (30 %, ordered by prio) is kept
    rate = full.float().mean().item()
    assert 0.36 < rate < 0.45, rate                        # binomial sd 0.008; + chance ~0.001
    first = anchor[token[:, :5]].all(1)
    assert first[full].float().mean().item() > 0.99
    p = torch.where(pad, torch.inf, prio[token])
    ordered = ((p[:, 1:] >= p[:, :-1]).all(1) & ((~pad).sum(1) == 64)).float().mean().item()
    assert 0.26 < ordered < 0.34, ordered
    # lengths of labels-in contexts stay the random 5-64 (mean ~34.5)
    assert 28 < (~pad).sum(1)[full].float().mean().item() < 41
    # a share of 0 leaves the sampler as it was
    ref = M.sample_context(present, 5, 64, torch.Generator().manual_seed(3), prio, 0.3)
    same = M.sample_context(present, 5, 64, torch.Generator().manual_seed(3), prio, 0.3,
                            anchor=anchor, anchor_fraction=0.0)
    assert torch.equal(ref[0], same[0]) and torch.equal(ref[1], same[1])


def test_request_sampler_weights():
    present = _present(b=3000)
    w = torch.ones(N_TOK)
    w[TOKEN_INDEX["bp_rp"]] = 0.0
    w[TOKEN_INDEX["mass"]] = 8.0
    token, valid = M.sample_requests(present, 4, w, torch.Generator().manual_seed(0))
    assert token.shape == (3000, 4)
    assert present.gather(1, token)[valid].all()
    assert (valid.sum(1) == (present & (w > 0)).sum(1).clamp(max=4)).all()
    picked = token[valid]
    assert not (picked == TOKEN_INDEX["bp_rp"]).any()
    # mass 8x as likely as a typical XP token: its pick rate per present star must be well above
    rate = lambda k: ((token == k) & valid).any(1)[present[:, k]].float().mean().item()
    assert rate(TOKEN_INDEX["mass"]) > 3 * rate(TOKEN_INDEX["bp10"])


def _loops(func) -> list[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    return [type(n).__name__ for n in ast.walk(tree)
            if isinstance(n, (ast.For, ast.While, ast.comprehension))]


def test_samplers_have_no_python_loops():
    assert _loops(M.sample_context) == []
    assert _loops(M.sample_requests) == []
