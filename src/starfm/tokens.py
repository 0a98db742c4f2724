"""The 121-token vocabulary shared by assembly, the model, evaluation and figures (SPEC §2).

SPEC §2's 120 tokens plus ``alpha_m`` ([alpha/M] from ASPCAP), a label the real-star library run
reports and predicts (SPEC §7; the paper's vocabulary has no [alpha/M]). It sits with the other
catalogue labels after [M/H].
"""
from __future__ import annotations

import numpy as np

N_XP = 55
XP_BP = [f"bp{i}" for i in range(N_XP)]
XP_RP = [f"rp{i}" for i in range(N_XP)]
COLOURS = ["bp_rp", "j_h", "j_k"]
LABELS = ["teff", "logg", "m_h", "alpha_m"]
# ln_ebv: natural log of E(B-V) on the Combined19 (SFD) scale;
# pseudo_luminosity: parallax[mas] * 10**(G/5); ln_age: natural log of age in Gyr.
OTHERS = ["ln_ebv", "pseudo_luminosity", "mass", "ln_age"]
VOCABULARY: list[str] = XP_BP + XP_RP + COLOURS + LABELS + OTHERS
assert len(VOCABULARY) == 121

TOKEN_INDEX = {name: i for i, name in enumerate(VOCABULARY)}

# Natural units of the labels that evaluation reports (SPEC §4, issue 4).
TARGETS = ["mass", "age", "teff", "logg", "m_h", "alpha_m"]
# their units and print formats (evaluation, report tables, figures)
TARGET_UNITS = {"mass": "Msun", "age": "Gyr", "teff": "K", "logg": "dex", "m_h": "dex",
                "alpha_m": "dex"}
TARGET_FORMATS = {"mass": ".3f", "age": ".2f", "teff": ".1f", "logg": ".3f", "m_h": ".3f",
                  "alpha_m": ".3f"}
# The input settings of the comparison (standard = bp0-29, rp0-29, J-H, J-K, BP-RP, ...) are
# defined in starfm.input_settings.

# XP tokens are coefficients / F_G, F_G in e-/s (the coefficients' unit) from G:
# 2.5 log10 F_G = 25.6873668671 - G (Gaia DR3 G zero point, Riello+2021; L&B24 eq. 8; SPEC §2)
G_FLUX_ZERO_POINT = 25.6873668671


def g_flux(g_mag) -> np.ndarray:
    """F_G [e-/s] from G: 2.5 log10 F_G = 25.6873668671 - G."""
    return 10.0 ** ((G_FLUX_ZERO_POINT - np.asarray(g_mag)) / 2.5)


def index(names: list[str]) -> list[int]:
    """Token indices of ``names``; KeyError names the unknown token."""
    return [TOKEN_INDEX[n] for n in names]
