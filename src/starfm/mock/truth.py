"""The mock survey's truth: the true parameters of every allStar row, and how they were made.

``truth.h5`` is row-aligned with allStar; its attributes record the injected extinction law and
conventions (read by assembly and the extinction-curve test as ``truth_attrs``).
"""
from __future__ import annotations

import os

import numpy as np

from starfm.constants import EBV_TRUE_OVER_SFD, EXTINCTION_LAW, R_V
from starfm.tables import write_table


def truth_columns(s, base, is_dup, unmatched, has_xp_base) -> dict:
    """The truth of each allStar row (``base``: its star) from a chunk's stars ``s``."""
    return {"apogee_id": s["apogee_id"][base],
            "source_id": np.where(unmatched, 0, s["source_id"])[base],
            "mass": s["mass"][base], "age_gyr": s["age_gyr"][base], "m_h": s["m_h"][base],
            "alpha_m": s["alpha_m"][base], "c_n": s["c_n"][base],
            "evol_state": np.where(s["is_red_clump"][base], "RC", "RGB"),
            "teff": s["teff"][base], "logg": s["logg"][base], "luminosity": s["luminosity"][base],
            "radius": s["radius"][base], "distance_kpc": s["distance"][base], "ebv": s["ebv"][base],
            "ebv_map": s["ebv_map"][base],
            "a_v": s["a_v"][base], "parallax_true": s["gaia"]["_parallax_true"][base],
            "parallax_zero_point": s["gaia"]["_zero_point"][base],
            "parallax_zero_point_residual": s["gaia"]["_zero_point_residual"][base], "g_mag": s["g_true"][base],
            "bp_rp": s["bp_rp_true"][base], "h_mag": s["jhk"]["H"][base],
            "glon": s["glon"][base], "glat": s["glat"][base],
            "is_red_clump": s["is_red_clump"][base], "is_duplicate": is_dup,
            "has_xp": has_xp_base[base]}


def write_truth(path: str | os.PathLike, truth: dict, common: dict, settings=None) -> None:
    """``truth.h5`` with the injected law and conventions as attributes (plus ``common``);
    ``settings`` (:class:`starfm.mock.survey.MockSettings`) gives the law's R_V and the errors."""
    from starfm.mock.spectra import extinction_law_name

    r_v = float(getattr(settings, "extinction_r_v", R_V))
    law = EXTINCTION_LAW if r_v == R_V else extinction_law_name(r_v)
    write_table(path, truth, attrs={
        "extinction_law": law, "r_v": r_v, "ebv_true_over_sfd": EBV_TRUE_OVER_SFD,
        "extinction_convention": f"A(lambda) = {r_v:g} * 0.884 * ebv * F99(lambda; R_V={r_v:g})/A_V; "
                                 "ebv on the SFD scale",
        "ebv_evaluation": "ebv_map: written Combined19 map at the true distance (finest HEALPix level, "
                          "linear in distance modulus, as mwdust.Combined19); ebv (true) = ebv_map x "
                          "exp(s z - s^2/2) + offset, clipped at 0",
        "ebv_map_scatter": float(getattr(settings, "ebv_map_scatter", 0.0)),
        "ebv_map_offset": float(getattr(settings, "ebv_map_offset", 0.0)),
        "parallax_zero_point": "Lindegren+2021 zpt.get_zpt + 0.005*clip(G-13,0,4) mas + residual "
                               "(parallax_zero_point_residual: offset + per-plate scatter)",
        "xp_correlated_noise": bool(getattr(settings, "xp_correlated_noise", False)),
        "xp_relevancy": str(getattr(settings, "xp_relevancy", "snr")),
        "model": str(getattr(settings, "model", "physical")),
        "sky_model": "src/starfm/mock/sky_model.py, data/sky_model.npz (fitted on the library's fit half)"
                     if getattr(settings, "model", "physical") == "sky" else "",
        "age_unit": "Gyr",
        "mass_age_relation": "ln(t/Gyr) = 2.386 - 3.476 ln M + 0.521 [M/H] + 0.443 [a/M] (RGB), "
                             "2.197 - 2.963 ln M + 0.483 [M/H] + 0.181 [a/M] (RC), + N(0, 0.05)",
        "evol_state": "RGB or RC (is_red_clump)",
        **common})
