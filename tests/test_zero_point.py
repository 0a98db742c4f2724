"""zero-point stage: Lindegren+2021 (gaiadr3-zeropoint) plus the paper's 0.005*clip(G-13,0,4) mas."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from zero_point import zpt

from starfm.errors import StarfmInputError
from starfm.tables import read_attrs, read_table, write_table
from starfm.zero_point import INPUT_COLUMNS, cli, correct_parallaxes, extra_term, lindegren_zero_point

zpt.load_tables()


def scalar_zpt(g, nu, pc, beta, solved):
    """The package called one star at a time (its documented scalar use).

    numpy scalars, not Python floats: under numpy 2 the package's scalar type check
    (np.can_cast on a Python float) raises TypeError, one reason the stage only uses arrays.
    """
    f = np.float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zpt.get_zpt(f(g), None if solved == 95 else f(nu), None if solved == 31 else f(pc),
                           f(beta), np.int64(solved))


def table(g, nu, pc, beta, solved, parallax=None):
    n = len(g)
    return {"source_id": np.arange(1, n + 1, dtype=np.int64),
            "parallax": np.ones(n) if parallax is None else np.asarray(parallax, float),
            "phot_g_mean_mag": np.asarray(g, float), "nu_eff_used_in_astrometry": np.asarray(nu, float),
            "pseudocolour": np.asarray(pc, float), "ecl_lat": np.asarray(beta, float),
            "astrometric_params_solved": np.asarray(solved, np.int16)}


@pytest.fixture(scope="module")
def real_cone(realdata_dir):
    """50 real gaia_source rows (TAP JSON), astrometric_params_solved 31, 95 and 3."""
    d = json.loads((realdata_dir / "gaia_source/astroquery/cone_search.json").read_text())
    names = [m["name"] for m in d["metadata"]]
    cols = {}
    for c in INPUT_COLUMNS:
        i = names.index(c)
        cols[c] = np.array([np.nan if r[i] is None else r[i] for r in d["data"]], dtype=float)
    cols["source_id"] = np.array([r[names.index("source_id")] for r in d["data"]], dtype=np.int64)
    cols["astrometric_params_solved"] = cols["astrometric_params_solved"].astype(int)
    return cols


def test_real_rows_match_scalar_calls(real_cone):
    out, stats = correct_parallaxes(real_cone, extra_mas=0.0)
    solved = real_cone["astrometric_params_solved"]
    assert stats["n_5p"] > 0 and stats["n_6p"] > 0 and stats["n_other_solution"] > 0
    for i in np.flatnonzero((solved == 31) | (solved == 95)):
        g = real_cone["phot_g_mean_mag"][i]
        want = scalar_zpt(np.clip(g, 6, 21), real_cone["nu_eff_used_in_astrometry"][i],
                          real_cone["pseudocolour"][i], real_cone["ecl_lat"][i], solved[i])
        # the package rounds to 1e-6 mas; the vectorised call must give the same number
        assert out["zero_point"][i] == pytest.approx(want, abs=1e-9), i
    assert np.isnan(out["zero_point"][solved == 3]).all()
    np.testing.assert_allclose(out["parallax_corrected"], real_cone["parallax"] - out["zero_point"])


def test_hand_checked_values():
    # By hand from the coefficient tables (z5/z6_200720.txt, Lindegren+2021 eq. A.1), in µas:
    #  5p, G=17.5 (a node), nu_eff=1.48 (all colour terms 0), beta=0: q00 - q02/3
    #  6p, G=13.1 (a node), pseudocolour=1.48, beta=90: q00 + q01 + q02*(2/3)
    #  5p, G=15.9, nu_eff=1.30, beta=0: q00 - q02/3 + q10*c1 + q20*c2, c1=-0.18, c2=0.18**3
    want = np.array([-29.18 - 2.41 / 3,
                     -38.29 + 2.59 + 16.20 * 2 / 3,
                     -38.33 - 15.42 / 3 + 0.0 * -0.18 - 1189 * 0.18 ** 3]) / 1000
    zp, _ = lindegren_zero_point([17.5, 13.1, 15.9], [1.48, np.nan, 1.30], [np.nan, 1.48, np.nan],
                                 [0.0, 90.0, 0.0], [31, 95, 31])
    np.testing.assert_allclose(zp, want, atol=1.5e-6)   # package rounds to 1e-6 mas


@pytest.mark.parametrize("g, want", [(12.0, 0.0), (15.0, 0.010), (18.0, 0.020)])
def test_extra_term(g, want):
    # 0.005 * clip(G - 13, 0, 4): 0 below G=13, 0.010 at 15, capped at 0.020 from G=17
    assert extra_term(np.array([g]), 0.005)[0] == pytest.approx(want, abs=1e-12)
    t = table([g], [1.5], [np.nan], [10.0], [31])
    with_extra, _ = correct_parallaxes(t, extra_mas=0.005)
    without, _ = correct_parallaxes(t, extra_mas=0.0)
    assert with_extra["zero_point"][0] - without["zero_point"][0] == pytest.approx(want, abs=1e-12)


def test_two_parameter_sources_are_nan():
    t = table([15.0, 16.0, 17.0, 15.0], [np.nan] * 3 + [1.5], [np.nan] * 4, [5.0] * 4, [3, 3, 3, 31])
    out, stats = correct_parallaxes(t)
    assert np.isnan(out["zero_point"][:3]).all() and np.isnan(out["parallax_corrected"][:3]).all()
    assert np.isfinite(out["zero_point"][3]) and stats["n_other_solution"] == 3


def test_nan_and_out_of_range_inputs():
    g = [5.0, 22.0, 15.0, 15.0, 15.0, np.nan, 15.0]
    nu = [1.5, 1.5, 2.2, np.nan, np.nan, 1.5, np.nan]
    pc = [np.nan, np.nan, np.nan, 1.0, np.nan, np.nan, 1.9]
    solved = [31, 31, 31, 95, 95, 31, 95]
    zp, stats = lindegren_zero_point(g, nu, pc, np.zeros(7), solved)
    # clip fallback: G held at 6 / 21 and pseudocolour at 1.72 / 1.24 (what the package itself
    # returns there), nu_eff held at 1.9 instead of the package's linear extrapolation
    want = [scalar_zpt(6.0, 1.5, 0, 0, 31), scalar_zpt(21.0, 1.5, 0, 0, 31),
            scalar_zpt(15.0, 1.9, 0, 0, 31), scalar_zpt(15.0, 0, 1.0, 0, 95)]
    np.testing.assert_allclose(zp[:4], want, atol=1e-9)
    assert zp[0] == pytest.approx(scalar_zpt(5.0, 1.5, 0, 0, 31))   # package clamps G too
    assert zp[6] == pytest.approx(scalar_zpt(15.0, 0, 1.72, 0, 95))
    assert np.isnan(zp[4]) and np.isnan(zp[5])                  # NaN colour / NaN G
    assert stats["n_nan_input"] == 2 and stats["n_g_out_of_range"] == 2
    assert stats["n_nu_eff_out_of_range"] == 1 and stats["n_pseudocolour_out_of_range"] == 2
    zp_nan, _ = lindegren_zero_point(g, nu, pc, np.zeros(7), solved, out_of_range="nan")
    assert np.isnan(zp_nan).all()


def test_many_stars_one_call_matches_scalar_loop():
    rng = np.random.default_rng(4)
    n = 400
    g = rng.uniform(6.5, 20.5, n)
    solved = rng.choice([31, 95, 3], n)
    nu = np.where(solved == 31, rng.uniform(1.25, 1.7, n), np.nan)
    pc = np.where(solved == 95, rng.uniform(1.25, 1.7, n), np.nan)
    beta = rng.uniform(-90, 90, n)
    zp, _ = lindegren_zero_point(g, nu, pc, beta, solved)
    sel = np.flatnonzero(solved != 3)[:40]
    loop = [scalar_zpt(g[i], nu[i], pc[i], beta[i], solved[i]) for i in sel]
    np.testing.assert_allclose(zp[sel], loop, atol=1e-9)
    assert np.isnan(zp[solved == 3]).all() and np.isfinite(zp[solved != 3]).all()


def test_missing_column_empty_and_cli(tmp_path, capsys):
    t = table([15.0, 16.0], [1.5, 1.5], [np.nan, np.nan], [5.0, 5.0], [31, 31], parallax=[1.0, 2.0])
    src = tmp_path / "gaia_source.h5"
    bad = {k: v for k, v in t.items() if k != "pseudocolour"}
    write_table(src, bad)
    out = tmp_path / "parallax.h5"
    assert cli(["--gaia-source", str(src), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "gaia_source.h5" in err and "pseudocolour" in err and not out.exists()
    with pytest.raises(StarfmInputError, match="empty"):
        correct_parallaxes({k: v[:0] for k, v in t.items()})
    write_table(src, t)
    assert cli(["--gaia-source", str(src), "--settings", '{"extra_term_mas": 0.005}', "--out", str(out),
                "--log", str(tmp_path / "zp.log")]) == 0
    res = read_table(out)
    assert sorted(res) == ["parallax_corrected", "source_id", "zero_point"]
    np.testing.assert_allclose(res["parallax_corrected"], t["parallax"] - res["zero_point"])
    assert read_attrs(out)["n_5p"] == 2


def test_import_is_the_third_party_package():
    import starfm.zero_point as ours
    ours._zpt_module()
    assert ours._zpt is zpt and ours.__name__ == "starfm.zero_point"
