"""Assembly: cuts, the 121 tokens (values, errors), the split, the standardisation, truth, bad input.

Inputs are written by ``tests/synthetic_inputs.py`` (a few dozen red giants that pass every cut,
in shuffled row order per table); each test edits chosen stars and checks them by source_id.
"""
from __future__ import annotations

import copy
import json

import h5py
import numpy as np
import pytest
from astropy.stats import mad_std

from starfm.assemble import _split_uniform, assemble, cli
from starfm.errors import StarfmInputError
from starfm.tables import read_attrs, read_table
from starfm.tokens import TOKEN_INDEX, VOCABULARY
from synthetic_inputs import DEFAULT_CUTS, drop_rows, row, synthetic_tables, write_inputs

XP = [TOKEN_INDEX[f"bp{i}"] for i in range(55)] + [TOKEN_INDEX[f"rp{i}"] for i in range(55)]
NON_XP = [k for k in range(len(VOCABULARY)) if k not in XP]


def run(tmp_path, tables, cuts=None, test_fraction=0.1, split_seed=7, name="dataset.h5"):
    paths = write_inputs(tmp_path, tables)
    out = tmp_path / name
    assemble(**paths, cuts=copy.deepcopy(cuts or DEFAULT_CUTS), test_fraction=test_fraction,
             split_seed=split_seed, out=out)
    ds = read_table(out)
    ds["attrs"] = read_attrs(out)
    ds["meta"] = read_table(out, group="meta")
    with h5py.File(out, "r") as f:
        if "truth" in f:
            ds["truth"] = read_table(out, group="truth")
    return ds


def star(ds, source_id):
    hits = np.flatnonzero(ds["source_id"] == source_id)
    assert len(hits) == 1
    return int(hits[0])


def tok(ds, source_id, name):
    i = star(ds, source_id)
    return ds["values"][i, TOKEN_INDEX[name]], ds["errors"][i, TOKEN_INDEX[name]]


@pytest.fixture
def tables():
    return synthetic_tables(n=40, seed=0)


def ids(tables):
    return tables["labels"]["source_id"]


# ---- tokens ---------------------------------------------------------------------------------
def test_xp_divided_by_g_flux_hand_computed(tmp_path, tables):
    sid = ids(tables)[:2]
    gs, xp = tables["gaia_source"], tables["xp"]
    # G = 25.6873668671 - 12.5 gives 2.5 log10 F_G = 12.5, F_G = 1e5; G + 2.5 gives F_G = 1e4
    for s, g_mag in zip(sid, (13.1873668671, 15.6873668671)):
        gs["phot_g_mean_mag"][row(gs, s)] = g_mag
    r0, r1 = row(xp, sid[0]), row(xp, sid[1])
    xp["bp_n_relevant_bases"][[r0, r1]] = 55
    xp["rp_n_relevant_bases"][[r0, r1]] = 55
    xp["bp_coefficients"][r0, :3] = [1e5, -2.5e4, 3e5]
    xp["bp_coefficient_errors"][r0, :3] = [1e3, 50.0, 0.0]
    xp["rp_coefficients"][r0, 54] = 1e5
    xp["rp_coefficients"][r1, 0] = 1e4
    xp["rp_coefficient_errors"][r1, 0] = 2e2
    ds = run(tmp_path, tables)
    v, e = tok(ds, sid[0], "bp0")
    assert v == np.float32(1.0)           # a coefficient equal to F_G is exactly 1
    assert e == pytest.approx(0.01, rel=1e-6)
    assert tok(ds, sid[0], "bp1")[0] == pytest.approx(-0.25, rel=1e-6)
    assert tok(ds, sid[0], "bp1")[1] == pytest.approx(5e-4, rel=1e-6)
    assert tok(ds, sid[0], "bp2") == pytest.approx((3.0, 0.0), rel=1e-6)
    assert tok(ds, sid[0], "rp54")[0] == np.float32(1.0)
    assert tok(ds, sid[1], "rp0") == pytest.approx((1.0, 0.02), rel=1e-6)
    assert ds["values"].dtype == np.float32 and ds["errors"].dtype == np.float32


def test_xp_tokens_match_formula_for_every_star(tmp_path, tables):
    ds = run(tmp_path, tables)
    xp, gs = tables["xp"], tables["gaia_source"]
    for band, offset in (("bp", 0), ("rp", 55)):
        rows = np.array([row(xp, s) for s in ds["source_id"]])
        g = np.array([gs["phot_g_mean_mag"][row(gs, s)] for s in ds["source_id"]])
        expect = xp[f"{band}_coefficients"][rows] / 10 ** ((25.6873668671 - g[:, None]) / 2.5)
        n_rel = xp[f"{band}_n_relevant_bases"][rows]
        n_eff = np.where(n_rel >= 52, 55, n_rel)
        expect[np.arange(55)[None, :] >= n_eff[:, None]] = np.nan
        np.testing.assert_allclose(ds["values"][:, offset:offset + 55], expect, rtol=1e-6)


@pytest.mark.parametrize("n_rel, first_nan", [(0, 0), (10, 10), (51, 51), (52, 55), (53, 55),
                                              (55, 55)])
def test_relevancy_nans_and_copy_of_51(tmp_path, tables, n_rel, first_nan):
    s = ids(tables)[5]
    xp = tables["xp"]
    r = row(xp, s)
    xp["bp_n_relevant_bases"][r] = n_rel
    xp["rp_n_relevant_bases"][r] = 55
    ds = run(tmp_path, tables)
    i = star(ds, s)
    bp = ds["values"][i, :55]
    # index < n_rel relevant; 52-54 follow 51 (relevant iff n_rel >= 52), so 51 -> NaN from 51 on
    assert np.isfinite(bp[:first_nan]).all()
    assert np.isnan(bp[first_nan:]).all()
    assert (ds["errors"][i, :55][first_nan:] == 0).all()
    assert np.isfinite(ds["values"][i, 55:110]).all()       # the other band untouched
    assert ds["meta"]["bp_n_relevant_bases"][i] == n_rel


def test_rp_relevancy_copy_106_to_107_109(tmp_path, tables):
    s1, s2 = ids(tables)[6:8]
    xp = tables["xp"]
    xp["rp_n_relevant_bases"][row(xp, s1)] = 52     # rp51 (token 106) relevant -> 107-109 too
    xp["rp_n_relevant_bases"][row(xp, s2)] = 51     # rp51 irrelevant -> 106-109 NaN
    ds = run(tmp_path, tables)
    assert np.isfinite(ds["values"][star(ds, s1), 106:110]).all()
    assert np.isfinite(ds["values"][star(ds, s2), 55:106]).all()
    assert np.isnan(ds["values"][star(ds, s2), 106:110]).all()


def test_missing_band_is_nan_and_other_band_kept(tmp_path, tables):
    s = ids(tables)[3]
    xp = tables["xp"]
    r = row(xp, s)
    xp["bp_coefficients"][r] = np.nan
    xp["bp_coefficient_errors"][r] = np.nan
    xp["bp_n_relevant_bases"][r] = 0
    ds = run(tmp_path, tables)
    i = star(ds, s)
    assert np.isnan(ds["values"][i, :55]).all() and (ds["errors"][i, :55] == 0).all()
    assert np.isfinite(ds["values"][i, 55:110]).any()


def test_pseudo_luminosity_and_error(tmp_path, tables):
    s1, s2 = ids(tables)[:2]
    gs, plx = tables["gaia_source"], tables["parallax"]
    for s, pc in ((s1, 1.5), (s2, -0.2)):
        gs["phot_g_mean_mag"][row(gs, s)] = 10.0
        gs["parallax_error"][row(gs, s)] = 0.05
        plx["parallax_corrected"][row(plx, s)] = pc
    ds = run(tmp_path, tables)
    # L = parallax_corrected * 10**(10/5) = 100 * parallax; error |0.05 / 1.5| * 150 = 5
    assert tok(ds, s1, "pseudo_luminosity") == pytest.approx((150.0, 5.0), rel=1e-6)
    assert tok(ds, s2, "pseudo_luminosity") == pytest.approx((-20.0, 5.0), rel=1e-6)


def test_label_colour_and_dust_tokens(tmp_path, tables):
    s = ids(tables)[4]
    lab, ext = tables["labels"], tables["extinction"]
    r = row(lab, s)
    lab["age_gyr"][r], lab["age_gyr_err"][r] = 2.0, 0.5
    lab["mass"][r], lab["mass_err"][r] = 1.3, 0.1
    lab["j"][r], lab["h"][r], lab["k"][r] = 10.0, 9.4, 9.2
    lab["j_err"][r], lab["h_err"][r], lab["k_err"][r] = 0.03, 0.04, 0.0
    ext["ln_ebv_median"][row(ext, s)] = -1.5
    ext["ln_ebv_mad_std"][row(ext, s)] = 0.1
    ds = run(tmp_path, tables)
    assert tok(ds, s, "ln_age") == pytest.approx((np.log(2.0), 0.25), rel=1e-6)
    assert tok(ds, s, "mass") == pytest.approx((1.3, 0.1), rel=1e-6)
    assert tok(ds, s, "j_h") == pytest.approx((0.6, 0.05), rel=1e-5)     # 0.03, 0.04 -> 0.05
    assert tok(ds, s, "j_k") == pytest.approx((0.8, 0.03), rel=1e-5)
    assert tok(ds, s, "ln_ebv") == pytest.approx((-1.5, 0.1), rel=1e-6)
    assert ds["meta"]["ebv_median"][star(ds, s)] == pytest.approx(np.exp(-1.5))
    assert tok(ds, s, "teff")[0] == pytest.approx(lab["teff"][r], rel=1e-6)
    assert tok(ds, s, "bp_rp")[0] == pytest.approx(
        tables["gaia_source"]["bp_rp"][row(tables["gaia_source"], s)], rel=1e-6)


def test_missing_values_nan_and_missing_errors_zero(tmp_path, tables):
    s1, s2 = ids(tables)[:2]
    lab = tables["labels"]
    r1, r2 = row(lab, s1), row(lab, s2)
    lab["teff_err"][r1] = np.nan          # value present, error missing -> 0
    lab["mass_err"][r1] = np.nan
    lab["j"][r2] = np.nan                 # value missing -> NaN, error 0
    lab["logg"][r2] = np.nan
    ds = run(tmp_path, tables)
    assert tok(ds, s1, "teff")[1] == 0 and np.isfinite(tok(ds, s1, "teff")[0])
    assert tok(ds, s1, "mass")[1] == 0
    for name in ("j_h", "j_k", "logg"):
        v, e = tok(ds, s2, name)
        assert np.isnan(v) and e == 0
    assert np.isfinite(ds["errors"]).all()
    assert (ds["errors"][np.isnan(ds["values"])] == 0).all()
    assert (ds["errors"] >= 0).all()


def test_star_absent_from_a_table_keeps_other_tokens(tmp_path, tables):
    sid = ids(tables)
    tables["gaia_source"] = drop_rows(tables["gaia_source"],
                                      tables["gaia_source"]["source_id"] == sid[0])
    tables["xp"] = drop_rows(tables["xp"], tables["xp"]["source_id"] == sid[1])
    tables["extinction"] = drop_rows(tables["extinction"],
                                     tables["extinction"]["source_id"] == sid[2])
    tables["parallax"] = drop_rows(tables["parallax"], tables["parallax"]["source_id"] == sid[3])
    ds = run(tmp_path, tables)
    assert len(ds["source_id"]) == 40
    v = lambda s, name: tok(ds, s, name)[0]
    # no gaia_source row: no G -> no XP, no BP-RP, no pseudo-luminosity; labels still there
    assert np.isnan(ds["values"][star(ds, sid[0]), XP]).all()
    assert np.isnan(v(sid[0], "bp_rp")) and np.isnan(v(sid[0], "pseudo_luminosity"))
    assert np.isfinite(v(sid[0], "mass")) and np.isfinite(v(sid[0], "ln_ebv"))
    assert not ds["meta"]["in_gaia_source"][star(ds, sid[0])]
    # no XP row: spectra absent, BP-RP (photometry) kept
    assert np.isnan(ds["values"][star(ds, sid[1]), XP]).all()
    assert np.isfinite(v(sid[1], "bp_rp")) and ds["meta"]["bp_n_relevant_bases"][star(ds, sid[1])] == 0
    assert np.isnan(v(sid[2], "ln_ebv")) and np.isfinite(ds["values"][star(ds, sid[2]), XP]).any()
    assert np.isnan(v(sid[3], "pseudo_luminosity")) and np.isfinite(v(sid[3], "bp_rp"))


# ---- cuts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("column, inside, outside", [
    ("mass", 0.5001, 0.5), ("mass", 3.9999, 4.0), ("age_gyr", 1e-4, 0.0),
    ("age_gyr", 13.9999, 14.0), ("m_h", -2.4999, -2.5), ("m_h", 0.6999, 0.7),
    ("mass", 1.0, np.nan), ("age_gyr", 5.0, np.nan)])
def test_label_cuts_open_bounds(tmp_path, tables, column, inside, outside):
    s_in, s_out = ids(tables)[:2]
    lab = tables["labels"]
    lab[column][row(lab, s_in)] = inside
    lab[column][row(lab, s_out)] = outside
    ds = run(tmp_path, tables)
    assert s_in in ds["source_id"] and s_out not in ds["source_id"]
    assert len(ds["source_id"]) == 39
    removed = {c["cut"].split()[0]: c["removed"] for c in ds["attrs"]["cut_counts"]}
    key = "finite" if np.isnan(outside) else {"age_gyr": "age", "m_h": "[M/H]"}.get(column, column)
    assert removed[key] == 1


def test_nan_metallicity_keeps_the_star_without_mh_token(tmp_path, tables):
    s = ids(tables)[0]
    tables["labels"]["m_h"][row(tables["labels"], s)] = np.nan
    ds = run(tmp_path, tables)
    v, e = tok(ds, s, "m_h")
    assert np.isnan(v) and e == 0 and np.isfinite(tok(ds, s, "mass")[0])


@pytest.mark.parametrize("column, inside, outside", [
    ("phot_g_mean_mag", 6.001, 6.0), ("phot_g_mean_mag", 17.499, 17.5),
    ("bp_rp", 0.001, 0.0), ("bp_rp", 3.999, 4.0), ("phot_bp_rp_excess_factor", 1.999, 2.0),
    ("phot_g_mean_mag", 12.0, np.nan)])
def test_xp_cuts_blank_only_xp_and_bp_rp(tmp_path, tables, column, inside, outside):
    s_in, s_out = ids(tables)[:2]
    gs = tables["gaia_source"]
    gs[column][row(gs, s_in)] = inside
    gs[column][row(gs, s_out)] = outside
    ds = run(tmp_path, tables)
    i_in, i_out = star(ds, s_in), star(ds, s_out)
    assert np.isfinite(ds["values"][i_in, XP]).sum() >= 80      # n_relevant >= 40 per band
    assert np.isfinite(ds["values"][i_in, TOKEN_INDEX["bp_rp"]])
    assert np.isnan(ds["values"][i_out, XP]).all() and (ds["errors"][i_out, XP] == 0).all()
    assert np.isnan(ds["values"][i_out, TOKEN_INDEX["bp_rp"]])
    others = [k for k in NON_XP if k != TOKEN_INDEX["bp_rp"]]
    if column == "phot_g_mean_mag" and np.isnan(outside):
        others.remove(TOKEN_INDEX["pseudo_luminosity"])          # no G, no luminosity
    assert np.isfinite(ds["values"][i_out, others]).all()       # only XP and BP-RP blanked
    assert not ds["meta"]["xp_valid"][i_out] and ds["meta"]["xp_valid"][i_in]


@pytest.mark.parametrize("column, inside, outside", [
    ("ruwe", 1.399, 1.4), ("parallax_error", 0.0999, 0.1)])
def test_parallax_cuts_blank_only_pseudo_luminosity(tmp_path, tables, column, inside, outside):
    s_in, s_out = ids(tables)[:2]
    gs = tables["gaia_source"]
    gs[column][row(gs, s_in)] = inside
    gs[column][row(gs, s_out)] = outside
    ds = run(tmp_path, tables)
    k = TOKEN_INDEX["pseudo_luminosity"]
    i_in, i_out = star(ds, s_in), star(ds, s_out)
    assert np.isfinite(ds["values"][i_in, k])
    assert np.isnan(ds["values"][i_out, k]) and ds["errors"][i_out, k] == 0
    assert np.isfinite(ds["values"][i_out, XP]).sum() >= 80      # n_relevant >= 40 per band
    assert np.isfinite(ds["values"][i_out, [j for j in NON_XP if j != k]]).all()
    assert ds["attrs"]["parallax_cut_counts"][column] == 1


def test_sample_emptied_by_a_cut_names_it(tmp_path, tables):
    tables["labels"]["mass"][:] = 5.0
    paths = write_inputs(tmp_path, tables)
    with pytest.raises(StarfmInputError, match=r"mass in \(0.5, 4.0\)"):
        assemble(**paths, cuts=DEFAULT_CUTS, test_fraction=0.1, split_seed=7,
                 out=tmp_path / "d.h5")
    assert not (tmp_path / "d.h5").exists()


# ---- split and standardisation --------------------------------------------------------------
def test_split_hash_fraction_and_seed():
    ids_ = np.random.default_rng(1).choice(2**62, 20000, replace=False).astype(np.int64)
    u = _split_uniform(ids_, 7)
    # binomial sigma of a 10 % fraction over 20k stars is 0.0021: 0.01 is ~5 sigma
    assert abs((u < 0.1).mean() - 0.1) < 0.01
    assert 0 <= u.min() and u.max() < 1
    # consecutive ids (Gaia ids cluster) still spread uniformly
    assert abs((_split_uniform(np.arange(10**15, 10**15 + 20000), 7) < 0.1).mean() - 0.1) < 0.01
    # the same star gets the same number whatever else is present; another seed, another split
    np.testing.assert_array_equal(_split_uniform(ids_[::-1][:500], 7), u[::-1][:500])
    assert ((_split_uniform(ids_, 8) < 0.1) != (u < 0.1)).sum() > 1000


def test_split_disjoint_and_stable_under_a_cut_change(tmp_path):
    tables = synthetic_tables(n=300, seed=2)
    ds = run(tmp_path, copy.deepcopy(tables), name="a.h5")
    n = len(ds["source_id"])
    assert ds["attrs"]["n_test"] == ds["is_test"].sum() and ds["attrs"]["n_train"] == n - ds["is_test"].sum()
    assert len(np.unique(ds["source_id"])) == n                 # one row per star: disjoint
    # 300 stars, p = 0.1: sigma = 17 stars; 10-50 test stars is > 2 sigma either side
    assert 10 <= ds["is_test"].sum() <= 50
    cuts = copy.deepcopy(DEFAULT_CUTS)
    cuts["mass"] = [1.2, 4.0]                                   # removes other stars
    ds2 = run(tmp_path, tables, cuts=cuts, name="b.h5")
    assert len(ds2["source_id"]) < n
    common, i1, i2 = np.intersect1d(ds["source_id"], ds2["source_id"], return_indices=True)
    np.testing.assert_array_equal(ds["is_test"][i1], ds2["is_test"][i2])
    assert ds2["is_test"].any()


def test_standardisation_uses_train_split_only(tmp_path, tables):
    is_test = _split_uniform(ids(tables), 7) < 0.3
    assert 0 < is_test.sum() < len(is_test)
    lab = tables["labels"]
    lab["teff"][is_test] = 1e5          # absurd test-split values must not move the statistics
    ds = run(tmp_path, tables, test_fraction=0.3)
    np.testing.assert_array_equal(
        ds["is_test"], _split_uniform(ds["source_id"], 7) < 0.3)
    train = ds["values"][~ds["is_test"]].astype(np.float64)
    k = TOKEN_INDEX["teff"]
    assert ds["attrs"]["token_median"][k] == pytest.approx(np.median(train[:, k]), rel=1e-6)
    assert ds["attrs"]["token_mad_std"][k] == pytest.approx(mad_std(train[:, k]), rel=1e-5)
    assert ds["attrs"]["token_median"][k] < 6000
    med = np.nanmedian(train, axis=0)
    np.testing.assert_allclose(ds["attrs"]["token_median"], med, rtol=1e-5)
    np.testing.assert_allclose(ds["attrs"]["token_mad_std"],
                               mad_std(train, axis=0, ignore_nan=True), rtol=1e-4)
    assert ds["attrs"]["vocabulary"] == VOCABULARY
    assert json.loads(ds["attrs"]["cuts"]) == DEFAULT_CUTS
    assert ds["attrs"]["split_seed"] == 7 and ds["attrs"]["test_fraction"] == 0.3


# ---- meta and truth -------------------------------------------------------------------------
def test_truth_matched_by_source_id_first_row(tmp_path, tables):
    sid = ids(tables)
    truth = tables["truth"]
    # drop the truth rows of one star; the first 3 stars have a second row with mass -1
    tables["truth"] = drop_rows(truth, truth["source_id"] == sid[10])
    ds = run(tmp_path, tables)
    t = ds["truth"]
    lab = tables["labels"]
    i = np.array([row(lab, s) for s in ds["source_id"]])
    has = t["has_truth"]
    assert not has[star(ds, sid[10])] and has.sum() == 39
    np.testing.assert_allclose(t["mass"][has], lab["mass"][i][has] * 1.01)
    assert np.isnan(t["mass"][star(ds, sid[10])])
    for s in sid[:3]:   # repeated source_id: the first row, not the later one
        assert t["mass"][star(ds, s)] > 0 and t["row"][star(ds, s)] < 40
    np.testing.assert_array_equal(t["source_id"], ds["source_id"])     # aligned rows
    assert t["apogee_id"][star(ds, sid[0])] == tables["labels"]["apogee_id"][row(lab, sid[0])]
    assert t["apogee_id"][star(ds, sid[10])] == ""
    assert ds["attrs"]["truth_attrs"]["extinction_law"] == "F99 R_V=3.1"


def test_meta_columns(tmp_path, tables):
    ds = run(tmp_path, tables)
    meta, gs = ds["meta"], tables["gaia_source"]
    for col in ("phot_g_mean_mag", "parallax", "parallax_corrected", "parallax_error", "ruwe",
                "glon", "glat", "ebv_median", "bp_n_relevant_bases", "rp_n_relevant_bases",
                "apogee_id"):
        assert col in meta and len(meta[col]) == len(ds["source_id"])
    s = ds["source_id"][0]
    assert meta["ruwe"][0] == gs["ruwe"][row(gs, s)]
    assert meta["apogee_id"][0] == tables["labels"]["apogee_id"][row(tables["labels"], s)]


# ---- bad input ------------------------------------------------------------------------------
def _expect_error(tmp_path, tables, match, cuts=None, test_fraction=0.1, paths=None):
    paths = paths or write_inputs(tmp_path, tables)
    out = tmp_path / "out.h5"
    out.write_text("previous")
    with pytest.raises(StarfmInputError, match=match):
        assemble(**paths, cuts=cuts or DEFAULT_CUTS, test_fraction=test_fraction,
                 split_seed=7, out=out)
    assert out.read_text() == "previous"                    # nothing half-written


def test_all_nan_mass_names_file_and_column(tmp_path, tables):
    tables["labels"]["mass"][:] = np.nan
    _expect_error(tmp_path, tables, r"labels\.h5: column 'mass' is entirely NaN")


def test_missing_column_and_file(tmp_path, tables):
    del tables["gaia_source"]["ruwe"]
    _expect_error(tmp_path, tables, r"gaia_source\.h5: missing column\(s\) \['ruwe'\]")
    tables = synthetic_tables(n=10)
    del tables["xp"]["rp_coefficient_errors"]
    _expect_error(tmp_path, tables, r"xp\.h5: missing column\(s\) \['rp_coefficient_errors'\]")
    paths = write_inputs(tmp_path, synthetic_tables(n=10))
    paths["extinction"] = tmp_path / "nowhere.h5"
    _expect_error(tmp_path, None, "nowhere.h5: file not found", paths=paths)


def test_empty_tables(tmp_path, tables):
    tables["xp"] = drop_rows(tables["xp"], np.ones(40, bool))
    _expect_error(tmp_path, tables, r"xp\.h5.*empty")
    tables = synthetic_tables(n=10)
    tables["labels"] = drop_rows(tables["labels"], np.ones(10, bool))
    _expect_error(tmp_path, tables, r"labels\.h5.*empty")


def test_corrupt_and_duplicate_and_unit_errors(tmp_path, tables):
    paths = write_inputs(tmp_path, tables)
    paths["parallax"].write_bytes(b"not hdf5")
    _expect_error(tmp_path, None, r"parallax\.h5: not a readable HDF5", paths=paths)
    tables["labels"]["source_id"][1] = tables["labels"]["source_id"][0]
    _expect_error(tmp_path, tables, "source_id is not unique")
    tables = synthetic_tables(n=10)
    tables["labels"]["age_gyr"] *= 1e9
    _expect_error(tmp_path, tables, "looks like years")


@pytest.mark.parametrize("patch, match", [
    ({"mass": [4.0, 0.5]}, "'mass' needs finite min < max"),
    ({"g_mag": [6.0, 6.0]}, "'g_mag' needs finite min < max"),
    ({"ruwe_max": -1}, "'ruwe_max': -1 is less than or equal to the minimum of 0"),
    ({"m_h": [0.1]}, r"'m_h': \[0.1\] is too short"),
    ({"ages": [0, 1]}, r"unknown key\(s\) \['ages'\]"),
])
def test_bad_cuts(tmp_path, tables, patch, match):
    cuts = {**DEFAULT_CUTS, **patch}
    _expect_error(tmp_path, tables, match, cuts=cuts)


def test_bad_cuts_missing_key_and_bad_json_and_fraction(tmp_path, tables):
    # a missing key takes its default (as every setting): the stored cuts are complete
    cuts = {k: v for k, v in DEFAULT_CUTS.items() if k != "bp_rp"}
    ds = run(tmp_path, copy.deepcopy(tables), cuts=cuts, name="partial.h5")
    assert json.loads(ds["attrs"]["cuts"]) == DEFAULT_CUTS
    _expect_error(tmp_path, tables, "not valid JSON", cuts="{mass: 1")
    _expect_error(tmp_path, tables, "split.test_fraction", test_fraction=1.0)


# ---- command line ---------------------------------------------------------------------------
def test_cli_contract(tmp_path, tables):
    paths = write_inputs(tmp_path, tables)
    out, log = tmp_path / "dataset.h5", tmp_path / "assemble.log"
    argv = ["--labels", str(paths["labels"]), "--gaia-source", str(paths["gaia_source"]),
            "--xp", str(paths["xp"]), "--parallax", str(paths["parallax"]),
            "--extinction", str(paths["extinction"]), "--truth", str(paths["truth"]),
            "--settings", json.dumps({"cuts": DEFAULT_CUTS, "split": {"test_fraction": 0.1, "seed": 7}}),
            "--out", str(out), "--log", str(log)]
    assert cli(argv) == 0 and out.exists()
    assert "mass in (0.5, 4.0) Msun" in log.read_text()
    bad = argv.copy()
    bad[bad.index("--settings") + 1] = json.dumps({"cuts": {**DEFAULT_CUTS, "mass": [4, 1]}})
    out.unlink()
    assert cli(bad) == 1 and not out.exists()


# ---- real archive XP rows -------------------------------------------------------------------
def test_real_xp_rows_with_missing_bp(tmp_path, realdata_dir):
    """Real Gaia DR3 XP rows (GaiaXPy's test file: one star without BP, n_relevant 53/47/50/40),
    parsed as the gaia-xp stage does, give the expected NaN pattern and coefficient / F_G."""
    from astropy.table import Table

    from starfm.xp_tables import parse_xp_tables

    fits = realdata_dir / "xp/gaiaxpy/xp_continuous/XP_CONTINUOUS_RAW_with_missing_BP.fits"
    xp = parse_xp_tables(Table.read(fits))
    tables = synthetic_tables(n=3, seed=4)
    tables.pop("truth")
    new_id = dict(zip(tables["labels"]["source_id"].tolist(), xp["source_id"].tolist()))
    for name in ("labels", "gaia_source", "parallax", "extinction"):
        tables[name]["source_id"] = np.array([new_id[s] for s in tables[name]["source_id"]])
        if "phot_g_mean_mag" in tables[name]:
            tables[name]["phot_g_mean_mag"][:] = 15.0
    tables["xp"] = xp
    ds = run(tmp_path, tables)
    flux = 10 ** ((25.6873668671 - 15.0) / 2.5)
    for r, s in enumerate(xp["source_id"]):
        i = star(ds, s)
        for band, offset in (("bp", 0), ("rp", 55)):
            n_rel = xp[f"{band}_n_relevant_bases"][r]
            n_eff = 55 if n_rel >= 52 else n_rel
            got = ds["values"][i, offset:offset + 55]
            assert np.isfinite(got[:n_eff]).all() and np.isnan(got[n_eff:]).all()
            np.testing.assert_allclose(got[:n_eff], xp[f"{band}_coefficients"][r, :n_eff] / flux,
                                       rtol=1e-6)
    no_bp = star(ds, 5405570973190252288)
    assert np.isnan(ds["values"][no_bp, :55]).all() and np.isfinite(ds["values"][no_bp, 55:102]).all()


def test_labels_without_alpha_m_assemble_with_the_token_absent(tmp_path):
    """A labels table written before [alpha/M] was a label (no alpha_m columns) still assembles:
    the alpha_m token is absent for every star and every other token is as with it."""
    tables = synthetic_tables(60, seed=4)
    a = run(tmp_path / "a", tables)
    lacking = copy.deepcopy(tables)
    del lacking["labels"]["alpha_m"], lacking["labels"]["alpha_m_err"]
    b = run(tmp_path / "b", lacking)
    k = TOKEN_INDEX["alpha_m"]
    assert np.isfinite(a["values"][:, k]).all() and np.isnan(b["values"][:, k]).all()
    others = np.arange(len(VOCABULARY)) != k
    np.testing.assert_array_equal(a["values"][:, others], b["values"][:, others])


def test_require_labels_naming_an_absent_optional_column_is_one_line(tmp_path):
    tables = synthetic_tables(30, seed=4)
    del tables["labels"]["alpha_m"], tables["labels"]["alpha_m_err"]
    paths = write_inputs(tmp_path, tables)
    with pytest.raises(StarfmInputError, match=r"labels\.h5: --require-labels names \['alpha_m'\]"):
        assemble(**paths, cuts=copy.deepcopy(DEFAULT_CUTS), test_fraction=0.1, split_seed=7,
                 out=tmp_path / "d.h5", require_labels=("teff", "alpha_m"))
    assert not (tmp_path / "d.h5").exists()
