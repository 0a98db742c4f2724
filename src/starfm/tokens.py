"""The 120-token vocabulary shared by assembly, the model, evaluation and figures (SPEC §2)."""
from __future__ import annotations

N_XP = 55
XP_BP = [f"bp{i}" for i in range(N_XP)]
XP_RP = [f"rp{i}" for i in range(N_XP)]
COLOURS = ["bp_rp", "j_h", "j_k"]
LABELS = ["teff", "logg", "m_h"]
# ln_ebv: natural log of E(B-V) on the Combined19 (SFD) scale;
# pseudo_luminosity: parallax[mas] * 10**(G/5); ln_age: natural log of age in Gyr.
OTHERS = ["ln_ebv", "pseudo_luminosity", "mass", "ln_age"]
VOCABULARY: list[str] = XP_BP + XP_RP + COLOURS + LABELS + OTHERS
assert len(VOCABULARY) == 120

TOKEN_INDEX = {name: i for i, name in enumerate(VOCABULARY)}

# Natural units of the labels that evaluation reports (SPEC §4, issue 4).
TARGETS = ["mass", "age", "teff", "logg", "m_h"]
# The transformer's inputs in evaluation and prediction (Zhang et al. 2026 Figs. 4-5): bp0-28,
# rp0-28, BP-RP, J-H, J-K, pseudo-luminosity, ln E(B-V) = 63 tokens, within the 64-token context.
EVALUATION_INPUTS = XP_BP[:29] + XP_RP[:29] + ["bp_rp", "j_h", "j_k", "pseudo_luminosity", "ln_ebv"]
# Baseline inputs (SPEC §4): bp0-29, rp0-29, J-H, J-K, BP-RP.
BASELINE_INPUTS = XP_BP[:30] + XP_RP[:30] + ["j_h", "j_k", "bp_rp"]


def index(names: list[str]) -> list[int]:
    """Token indices of ``names``; KeyError names the unknown token."""
    return [TOKEN_INDEX[n] for n in names]
