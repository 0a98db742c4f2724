"""The mock survey's truth: the true parameters of every allStar row, and how they were made.

``truth.h5`` is row-aligned with allStar; its attributes record the injected extinction law and
conventions (read by assembly and the extinction-curve test as ``truth_attrs``).
"""
from __future__ import annotations

import os

import numpy as np

from starfm.constants import EBV_TRUE_OVER_SFD, EXTINCTION_LAW, R_V
from starfm.io import write_table


def truth_columns(s, base, is_dup, unmatched, has_xp_base) -> dict:
    """The truth of each allStar row (``base``: its star) from a chunk's stars ``s``."""
    return {"apogee_id": s["apogee_id"][base],
            "source_id": np.where(unmatched, 0, s["source_id"])[base],
            "mass": s["mass"][base], "age_gyr": s["age_gyr"][base], "m_h": s["m_h"][base],
            "teff": s["teff"][base], "logg": s["logg"][base], "luminosity": s["luminosity"][base],
            "radius": s["radius"][base], "distance_kpc": s["distance"][base], "ebv": s["ebv"][base],
            "a_v": s["a_v"][base], "parallax_true": s["gaia"]["_parallax_true"][base],
            "parallax_zero_point": s["gaia"]["_zero_point"][base], "g_mag": s["g_true"][base],
            "bp_rp": s["bp_rp_true"][base], "h_mag": s["jhk"]["H"][base],
            "glon": s["glon"][base], "glat": s["glat"][base],
            "is_red_clump": s["is_red_clump"][base], "is_duplicate": is_dup,
            "has_xp": has_xp_base[base]}


def write_truth(path: str | os.PathLike, truth: dict, common: dict) -> None:
    """``truth.h5`` with the injected law and conventions as attributes (plus ``common``)."""
    write_table(path, truth, attrs={
        "extinction_law": EXTINCTION_LAW, "r_v": R_V, "ebv_true_over_sfd": EBV_TRUE_OVER_SFD,
        "extinction_convention": "A(lambda) = 3.1 * 0.884 * ebv * F99(lambda)/A_V; ebv on the SFD scale",
        "ebv_evaluation": "written Combined19 map at the true distance: finest HEALPix level, linear in "
                          "distance modulus (as mwdust.Combined19)",
        "parallax_zero_point": "Lindegren+2021 zpt.get_zpt + 0.005*clip(G-13,0,4) mas",
        "age_unit": "Gyr", "mass_age_relation": "t_MS = 10 Gyr 10^(0.15 [M/H]) M^-2.5",
        **common})
