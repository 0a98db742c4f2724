"""The public tokeniser (starfm.tokenise): what assemble trains on and predict infers from."""
from __future__ import annotations

import numpy as np
import pytest

from starfm import tokens
from starfm.errors import StarfmInputError
from starfm.tokenise import CutSettings, g_flux, tokenise, validity

K = tokens.TOKEN_INDEX


def _columns(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return {"bp_coefficients": rng.normal(1e3, 50, (n, 55)), "rp_coefficients": rng.normal(2e3, 50, (n, 55)),
            "bp_coefficient_errors": rng.uniform(1, 2, (n, 55)), "rp_coefficient_errors": rng.uniform(1, 2, (n, 55)),
            "bp_n_relevant_bases": rng.integers(0, 56, n), "rp_n_relevant_bases": rng.integers(1, 56, n),
            "phot_g_mean_mag": rng.uniform(8, 17, n), "bp_rp": rng.uniform(0.5, 3, n),
            "phot_bp_rp_excess_factor": rng.uniform(1.1, 1.5, n), "ruwe": rng.uniform(0.8, 1.3, n),
            "parallax_corrected": rng.uniform(0.1, 2, n), "parallax_error": rng.uniform(0.01, 0.05, n),
            "j": rng.uniform(8, 12, n), "h": rng.uniform(7, 11, n), "k": rng.uniform(7, 11, n),
            "j_err": np.full(n, 0.02), "h_err": np.full(n, 0.03), "k_err": np.full(n, np.nan)}


def test_values_errors_and_chunk_independence():
    cols = _columns()
    v, e = tokenise(cols)
    assert v.shape == e.shape == (50, len(tokens.VOCABULARY)) and v.dtype == e.dtype == np.float32
    flux = g_flux(cols["phot_g_mean_mag"])
    rel = np.arange(55)[None, :] < np.where(cols["rp_n_relevant_bases"] > 51, 55, cols["rp_n_relevant_bases"])[:, None]
    expected = np.where(rel, cols["rp_coefficients"] / flux[:, None], np.nan).astype(np.float32)
    np.testing.assert_array_equal(v[:, K["rp0"]:K["rp0"] + 55], expected)
    np.testing.assert_allclose(e[:, K["j_h"]], np.hypot(0.02, 0.03), rtol=1e-6)
    np.testing.assert_allclose(e[:, K["j_k"]], 0.02, rtol=1e-6)          # missing K error counts 0
    assert np.isnan(v[:, K["teff"]]).all() and (e[:, K["teff"]] == 0).all()  # absent column
    halves = [tokenise({k: c[s] for k, c in cols.items()}) for s in (slice(0, 17), slice(17, None))]
    np.testing.assert_array_equal(np.concatenate([h[0] for h in halves]), v)
    np.testing.assert_array_equal(np.concatenate([h[1] for h in halves]), e)


def test_missing_quality_fail_or_pass():
    cols = _columns()
    cols["bp_rp"][:10] = np.nan
    cols["ruwe"][5:15] = np.nan
    fail, passed = validity(cols), validity(cols, missing_quality="pass")
    assert not fail["xp"][:10].any() and not fail["parallax"][5:15].any()
    assert passed["photometry"][:10].all() and passed["parallax"][5:15].all()
    v, _ = tokenise(cols, missing_quality="pass")
    assert np.isfinite(v[:10, K["rp0"]]).all() and np.isnan(v[:10, K["bp_rp"]]).all()
    assert np.isfinite(v[5:15, K["pseudo_luminosity"]]).all()
    # G and the parallax error are never optional
    cols["phot_g_mean_mag"][20] = np.nan
    cols["parallax_error"][21] = np.nan
    v, _ = tokenise(cols, missing_quality="pass")
    assert np.isnan(v[20]).sum() >= 111 and np.isnan(v[21, K["pseudo_luminosity"]])


def test_cuts_and_bad_shapes():
    cols = _columns()
    v, _ = tokenise(cols, CutSettings(g_mag=(6.0, 10.0)))
    bright = cols["phot_g_mean_mag"] < 10
    assert np.isfinite(v[bright, K["rp0"]]).all() and np.isnan(v[~bright, K["rp0"]]).all()
    assert CutSettings.parse({"g_mag": [6, 17.5], "mass": [0.5, 4]}) == CutSettings()
    # a config dict works as well as the object, and gives the same tokens
    np.testing.assert_array_equal(tokenise(cols, {"g_mag": [6, 10]})[0], v)
    with pytest.raises(StarfmInputError, match="g_mag"):
        CutSettings.parse({"g_mag": [10, 6]})
    with pytest.raises(StarfmInputError, match="g_mag"):
        CutSettings(g_mag=(10.0, 6.0))
    with pytest.raises(StarfmInputError, match="unequal length"):
        tokenise({**cols, "j": cols["j"][:3]})
    with pytest.raises(StarfmInputError, match="bp_coefficients.*expected"):
        tokenise({**cols, "bp_coefficients": cols["bp_coefficients"][:, :50]})


def test_cuts_narrowed_never_widened():
    """predict applies the model's training cuts narrowed by a config: a wider value is ignored."""
    base = CutSettings()
    cuts, wider = base.narrowed({"g_mag": [8.0, 20.0], "ruwe_max": 1.2, "parallax_error_max": 0.5})
    assert cuts.g_mag == (8.0, 17.5) and cuts.ruwe_max == 1.2 and cuts.parallax_error_max == 0.1
    assert wider == ["g_mag", "parallax_error_max"]
    assert base.narrowed({}) == (base, [])
    with pytest.raises(StarfmInputError, match="unknown key 'teff_max'"):
        base.narrowed({"teff_max": 1.0})


def test_label_cuts_count_names_and_missing_labels():
    lab = {"mass": np.array([1.0, 0.4, np.nan, 1.0]), "age_gyr": np.array([5.0, 5.0, 5.0, 15.0]),
           "m_h": np.array([np.nan, 0.0, 0.0, 1.0])}
    checks = CutSettings().label_checks(lab)
    assert [name for name, _ in checks] == ["mass in (0.5, 4.0) Msun", "age in (0.0, 14.0) Gyr",
                                            "[M/H] in (-2.5, 0.7) where finite"]
    assert [ok.tolist() for _, ok in checks] == [[True, False, False, True],
                                                 [True, True, True, False],
                                                 [True, True, True, False]]
