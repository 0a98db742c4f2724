"""XP / gaia_source parsers on every real file in realdata, checked against the independent
reader ``realdata/load_realdata.py`` (pandas + per-value float(): a different code path)."""
from __future__ import annotations

import importlib.util
import time
import warnings

import numpy as np
import pytest
from astropy.io import votable
from astropy.table import Table

from starfm.archive_formats import read_datalink_zip
from starfm.errors import StarfmInputError
from starfm.xp_tables import (XP_COLUMNS, XP_OUTPUT_DTYPES, parse_gaia_source, parse_xp_tables,
                              read_tap_json)

warnings.filterwarnings("ignore", module="astropy")

MISSING_BP_ID = 5405570973190252288


@pytest.fixture(scope="module")
def reference(realdata_dir):
    """load_realdata.load_all(): name -> DataFrame (the independent reader)."""
    spec = importlib.util.spec_from_file_location("load_realdata", realdata_dir / "load_realdata.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mod.load_all()


def _read_as_astroquery(path):
    """What astroquery's load_data would hand back for this file (by extension)."""
    name = path.name
    if name.endswith((".xml", ".vot")):
        return list(votable.parse(path).iter_tables())
    if name.endswith(".csv"):
        return [Table.read(path, format="ascii.csv", fast_reader=False)]
    if name.endswith(".ecsv"):
        return [Table.read(path, format="ascii.ecsv")]
    return [Table.read(path, format="fits")]


def _check_against(parsed, frame, with_errors=True, with_scalars=True):
    """Same stars and values as the reference frame (NaN/None for a missing band)."""
    ref = frame.drop_duplicates("source_id").set_index("source_id")
    assert sorted(parsed["source_id"]) == sorted(ref.index)
    for i, sid in enumerate(parsed["source_id"]):
        row = ref.loc[sid]
        for band in ("bp", "rp"):
            coef = row[f"{band}_coefficients"]
            if coef is None:
                assert np.all(np.isnan(parsed[f"{band}_coefficients"][i]))
                assert parsed[f"{band}_n_relevant_bases"][i] == 0
                assert parsed[f"{band}_n_parameters"][i] == 0
                continue
            # coefficients are float64 in every archive format: exact up to text round-trip
            np.testing.assert_allclose(parsed[f"{band}_coefficients"][i], coef, rtol=1e-12)
            if with_errors:
                # errors are float32 in the archive: agree to float32 precision
                np.testing.assert_allclose(parsed[f"{band}_coefficient_errors"][i],
                                           row[f"{band}_coefficient_errors"], rtol=1e-6)
            if with_scalars:
                assert parsed[f"{band}_n_relevant_bases"][i] == row[f"{band}_n_relevant_bases"]
                std = row[f"{band}_standard_deviation"]
                if np.isfinite(std):
                    np.testing.assert_allclose(parsed[f"{band}_standard_deviation"][i], std, rtol=1e-6)


def _check_dtypes(parsed):
    assert list(parsed) == list(XP_COLUMNS)
    for k, dt in XP_OUTPUT_DTYPES.items():
        assert parsed[k].dtype == dt, k
    assert parsed["bp_coefficients"].shape == (len(parsed["source_id"]), 55)
    assert np.all(np.diff(parsed["source_id"]) > 0)  # sorted, unique


GAIAXPY_FILES = {
    "XP_CONTINUOUS_RAW": ["XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW.ecsv", "XP_CONTINUOUS_RAW.fits",
                          "XP_CONTINUOUS_RAW.xml", "XP_CONTINUOUS_RAW_plain.xml"],
    "XP_CONTINUOUS_RAW_with_missing_BP": [
        "XP_CONTINUOUS_RAW_with_missing_BP.csv", "XP_CONTINUOUS_RAW_with_missing_BP.ecsv",
        "XP_CONTINUOUS_RAW_with_missing_BP.fits", "XP_CONTINUOUS_RAW_with_missing_BP.xml",
        "XP_CONTINUOUS_RAW_with_missing_BP_plain.xml"],
    "XP_CONTINUOUS_RAW_missing_BP_dr3int6": [
        "XP_CONTINUOUS_RAW_missing_BP_dr3int6.csv", "XP_CONTINUOUS_RAW_missing_BP_dr3int6.ecsv",
        "XP_CONTINUOUS_RAW_missing_BP_dr3int6.fits", "XP_CONTINUOUS_RAW_missing_BP_dr3int6.xml",
        "XP_CONTINUOUS_RAW_missing_BP_plain_dr3int6.xml", "XP_CONTINUOUS_RAW_missing_BP_votable_dr3int6.xml",
        "XP_CONTINUOUS_RAW_missing_BP_votable_plain_dr3int6.xml"],
    "XP_CONTINUOUS_RAW_colour_eq_dr3int6": ["XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv"],
}


@pytest.mark.parametrize("stem,name", [(s, f) for s, fs in GAIAXPY_FILES.items() for f in fs])
def test_gaiaxpy_files_every_format(realdata_dir, reference, stem, name):
    path = realdata_dir / "xp" / "gaiaxpy" / "xp_continuous" / name
    parsed = parse_xp_tables(_read_as_astroquery(path))
    _check_dtypes(parsed)
    _check_against(parsed, reference[f"xp_gaiaxpy_{stem}"])


def test_every_gaiaxpy_file_is_covered(realdata_dir):
    on_disk = {p.name for p in (realdata_dir / "xp" / "gaiaxpy" / "xp_continuous").iterdir()}
    assert on_disk == {f for fs in GAIAXPY_FILES.values() for f in fs}


def test_missing_bp_row_is_nan_with_zero_counts(realdata_dir):
    for name in GAIAXPY_FILES["XP_CONTINUOUS_RAW_with_missing_BP"]:
        path = realdata_dir / "xp" / "gaiaxpy" / "xp_continuous" / name
        p = parse_xp_tables(_read_as_astroquery(path))
        i = int(np.flatnonzero(p["source_id"] == MISSING_BP_ID)[0])
        assert np.all(np.isnan(p["bp_coefficients"][i])) and np.all(np.isnan(p["bp_coefficient_errors"][i]))
        assert p["bp_n_relevant_bases"][i] == 0 and p["bp_n_parameters"][i] == 0
        assert np.isnan(p["bp_standard_deviation"][i])
        assert np.all(np.isfinite(p["rp_coefficients"][i])) and p["rp_n_parameters"][i] == 55, name
        others = p["source_id"] != MISSING_BP_ID
        assert np.all(np.isfinite(p["bp_coefficients"][others])), name


@pytest.mark.parametrize("kind", ["csv", "ecsv", "fits", "vot"])
def test_astroquery_datalink_zips(realdata_dir, reference, kind):
    """The astroquery test-data zips: a load_data dict with XP_CONTINUOUS, XP_SAMPLED and MCMC files."""
    path = realdata_dir / "xp" / "astroquery" / f"gaia_dr3_source_id_5937083312263887616_dl_products_{kind}.zip"
    products = read_datalink_zip(path)
    assert len(products) == 3  # the XP_SAMPLED / MCMC_MSC members must be ignored
    parsed = parse_xp_tables(products)
    _check_dtypes(parsed)
    assert parsed["source_id"].tolist() == [5937083312263887616]
    _check_against(parsed, reference[f"xp_astroquery_{kind}"])


@pytest.mark.parametrize("rel,ref", [
    ("gaiaxpcorrection/example_file_coeff.csv", "xp_gaiaxpcorrection"),
    ("gaiaxpy/cholesky_solution/18Sco-XP-spectra.csv", "xp_gaiaxpy_18Sco"),
    ("xp_spectral_lines/xp_continuous_combined_weiler2023_examples.vot", "xp_xp_spectral_lines_weiler2023"),
])
def test_other_archive_tables(realdata_dir, reference, rel, ref):
    parsed = parse_xp_tables(_read_as_astroquery(realdata_dir / "xp" / rel))
    _check_dtypes(parsed)
    # 18 Sco's file has no n_relevant_bases / standard_deviation columns
    _check_against(parsed, reference[ref], with_scalars="18Sco" not in rel)


def test_float32_per_coefficient_columns_chunk0(realdata_dir, reference):
    """2,000 stars as float32 bp_coeff_0..54 / e_bp_coeff_0..54 columns (no std, no n_parameters)."""
    t = Table.read(realdata_dir / "xp" / "xp_spectral_lines" / "xp_continuous_combined_chunk0.fits")
    parsed = parse_xp_tables(t)
    _check_dtypes(parsed)
    assert len(parsed["source_id"]) == 2000
    ref = reference["xp_xp_spectral_lines_chunk0"].set_index("source_id").loc[parsed["source_id"]]
    np.testing.assert_array_equal(parsed["bp_coefficients"], np.stack(ref["bp_coefficients"]))
    np.testing.assert_array_equal(parsed["rp_coefficient_errors"], np.stack(ref["rp_coefficient_errors"]).astype(np.float32))
    np.testing.assert_array_equal(parsed["bp_n_relevant_bases"], ref["bp_n_relevant_bases"].to_numpy())
    assert np.all(parsed["bp_n_parameters"] == 55)  # counted from the 55 coefficient columns
    assert np.all(np.isnan(parsed["bp_standard_deviation"]))  # not in the file


def test_npz_coefficients_only(realdata_dir, reference):
    """2,815 stars, float32 coefficients only (BP 0-54, RP 55-109), as fixed (n, 55) columns."""
    z = np.load(realdata_dir / "xp" / "gaiaxp_spectra_analysis" / "gaia_dr3_xp_c110_binary.npz")
    t = Table({"source_id": z["source_id"], "bp_coefficients": z["X"][:, :55], "rp_coefficients": z["X"][:, 55:]})
    parsed = parse_xp_tables(t)
    _check_dtypes(parsed)
    ref = reference["xp_gaiaxp_spectra_analysis"].set_index("source_id").loc[parsed["source_id"]]
    np.testing.assert_array_equal(parsed["rp_coefficients"], np.stack(ref["rp_coefficients"]))
    assert np.all(np.isnan(parsed["bp_coefficient_errors"]))


def test_reconcile_bp_and_rp_from_separate_tables(realdata_dir):
    """One table holds a star's BP only, another its RP only: one row with both."""
    path = realdata_dir / "xp" / "gaiaxpy" / "xp_continuous" / "XP_CONTINUOUS_RAW.fits"
    t = Table.read(path)
    only_bp, only_rp = t.copy(), t.copy()
    for band, tab in (("rp", only_bp), ("bp", only_rp)):
        for name in tab.colnames:
            if name.startswith(band + "_") and tab[name].dtype == object:
                for i in range(len(tab)):
                    tab[name][i] = np.zeros(0)
    whole = parse_xp_tables(t)
    merged = parse_xp_tables({"XP_CONTINUOUS_RAW_a.fits": [only_rp], "XP_CONTINUOUS_RAW_b.fits": [only_bp]})
    assert merged["source_id"].tolist() == whole["source_id"].tolist()
    for k in XP_COLUMNS:
        np.testing.assert_array_equal(merged[k], whole[k], err_msg=k)


def test_upper_case_names_and_bad_input():
    t = Table({"SOURCE_ID": np.array([3, 1]), "BP_COEFFICIENTS": np.ones((2, 55)),
               "RP_COEFFICIENTS": np.full((2, 55), 2.0)})
    p = parse_xp_tables(t)
    assert p["source_id"].tolist() == [1, 3]
    with pytest.raises(StarfmInputError, match="bp_coefficients"):
        parse_xp_tables(Table({"source_id": [1]}))
    with pytest.raises(StarfmInputError, match="source_id"):
        parse_xp_tables(Table({"bp_coefficients": np.ones((1, 55))}))
    with pytest.raises(StarfmInputError, match="unparsable"):
        parse_xp_tables(Table({"source_id": [1], "bp_coefficients": ["(1, 2, x)"], "rp_coefficients": ["(1)"]}))


def test_text_cells_are_vectorised_and_fast():
    """5,000 CSV rows x 2 bands x (55 coefficients + 55 errors) = 1.1 M values: one join + one
    np.fromstring, ~0.6 s here (~0.5 us/value). 5 s catches a per-cell parser (np.array or
    astropy per row, ~5-10x slower) while leaving room for a slow, shared CI core."""
    rng = np.random.default_rng(1)
    n = 5000
    coef = rng.normal(size=(n, 55)) * 1e3
    cells = np.array(["(" + ", ".join(map(repr, r)) + ")" for r in coef.tolist()])
    t = Table({"source_id": np.arange(n), "bp_coefficients": cells, "bp_coefficient_errors": cells,
               "rp_coefficients": cells, "rp_coefficient_errors": cells})
    t0 = time.perf_counter()
    p = parse_xp_tables(t)
    elapsed = time.perf_counter() - t0
    np.testing.assert_array_equal(p["bp_coefficients"], coef)  # repr round-trips exactly
    assert elapsed < 5.0, elapsed


# ----------------------------------------------------------------------------- gaia_source
GS_DIR = ("gaia_source", "astroquery")


def _gs_reference(reference, key):
    return reference[key].set_index("source_id")


@pytest.mark.parametrize("name,key", [
    ("1710099405832VAL-result.vot", "gaia_source_1710099405832VAL"),
    ("1712337806100O-result.ecsv", "gaia_source_1712337806100O"),
    ("cone_search.json", "gaia_source_cone_search_json"),
])
def test_gaia_source_files(realdata_dir, reference, name, key):
    path = realdata_dir.joinpath(*GS_DIR, name)
    obj = read_tap_json(path) if name.endswith(".json") else (
        list(votable.parse(path).iter_tables()) if name.endswith(".vot") else Table.read(path))
    p = parse_gaia_source(obj)
    ref = _gs_reference(reference, key).loc[p["source_id"]]
    for col in ("parallax", "parallax_error", "phot_g_mean_mag", "bp_rp", "ruwe", "pseudocolour", "ecl_lat"):
        np.testing.assert_allclose(p[col], ref[col].astype(float).to_numpy(), rtol=1e-6, err_msg=col)
    assert p["parallax"].dtype == np.float64 and p["ruwe"].dtype == np.float32
    aps = ref["astrometric_params_solved"]
    expected = aps.astype("Float64").fillna(0).astype(int).to_numpy()  # null -> 0
    np.testing.assert_array_equal(p["astrometric_params_solved"], expected)
    if name.endswith(".ecsv"):
        assert np.all(p["astrometric_params_solved"] == 0)  # null in this file
    if name.endswith(".json"):
        assert set(p["astrometric_params_solved"]) <= {3, 31, 95} and len(p["source_id"]) == 50


def test_gaia_source_missing_column(realdata_dir):
    t = Table.read(realdata_dir.joinpath(*GS_DIR, "1712337806100O-result.ecsv"))
    t.remove_column("ruwe")
    with pytest.raises(StarfmInputError, match="ruwe"):
        parse_gaia_source(t)
