"""labels stage: allStar + DistMass -> one row per Gaia source_id (SPEC §1.1-1.2)."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from starfm.apogee_labels import (
    ALLSTAR_COLUMNS, build_labels, cli, read_allstar, read_fits_columns,
)
from starfm.errors import StarfmInputError
from starfm.tables import read_attrs, read_table

COLS = {"apogee_id": "APOGEE_ID", "mass": "MASS", "mass_err": "MASS_ERR", "age": "AGE",
        "age_err": "AGE_ERR", "bitmask": "BITMASK"}
CONTRACT = ["source_id", "apogee_id", "glon", "glat", "j", "j_err", "h", "h_err", "k", "k_err",
            "teff", "teff_err", "logg", "logg_err", "m_h", "m_h_err", "alpha_m", "alpha_m_err",
            "mass", "mass_err", "age_gyr", "age_gyr_err"]
MONTALBAN = "labels/xgboost_chem_ages/Montalban2021_X_APOGEE_DR17.fits"


# ---------------------------------------------------------------- helpers

def make_allstar(n: int, **cols) -> Table:
    """A synthetic allStar table with every column the stage reads (good values by default)."""
    defaults = {
        "APOGEE_ID": [f"2M{i:08d}+0000000" for i in range(n)], "TELESCOPE": ["apo25m"] * n,
        "FIELD": ["F"] * n, "RA": np.linspace(10, 20, n), "DEC": np.linspace(-5, 5, n),
        "GLON": np.linspace(30, 40, n), "GLAT": np.linspace(-2, 2, n),
        "J": np.full(n, 10.0, "f4"), "J_ERR": np.full(n, 0.02, "f4"),
        "H": np.full(n, 9.5, "f4"), "H_ERR": np.full(n, 0.02, "f4"),
        "K": np.full(n, 9.3, "f4"), "K_ERR": np.full(n, 0.02, "f4"),
        "STARFLAG": np.zeros(n, "i8"), "ASPCAPFLAG": np.zeros(n, "i8"),
        "EXTRATARG": np.zeros(n, "i4"), "GAIAEDR3_SOURCE_ID": np.arange(1, n + 1, dtype="i8") * 1000,
        "TEFF": np.full(n, 4800.0, "f4"), "TEFF_ERR": np.full(n, 10.0, "f4"),
        "LOGG": np.full(n, 2.5, "f4"), "LOGG_ERR": np.full(n, 0.03, "f4"),
        "M_H": np.full(n, -0.1, "f4"), "M_H_ERR": np.full(n, 0.01, "f4"),
        "ALPHA_M": np.full(n, 0.05, "f4"), "ALPHA_M_ERR": np.full(n, 0.01, "f4"),
    }
    defaults.update(cols)
    return Table(defaults)


def make_distmass(ids, mass=None, age_yr=None, bitmask=None, **extra) -> Table:
    n = len(ids)
    return Table({"APOGEE_ID": list(ids),
                  "MASS": np.full(n, 1.2) if mass is None else np.asarray(mass, float),
                  "MASS_ERR": np.full(n, 0.1),
                  "AGE": np.full(n, 4e9) if age_yr is None else np.asarray(age_yr, float),
                  "AGE_ERR": np.full(n, 1e9),
                  "BITMASK": np.zeros(n, "i8") if bitmask is None else np.asarray(bitmask, "i8"),
                  **extra})


def write(tmp_path, allstar: Table, distmass: Table):
    a, d = tmp_path / "allStar.fits", tmp_path / "distmass.fits"
    allstar.write(a, overwrite=True)
    distmass.write(d, overwrite=True)
    return a, d


def run(tmp_path, allstar, distmass, cols=COLS, unit="yr"):
    a, d = write(tmp_path, allstar, distmass)
    return build_labels(a, d, json.dumps(cols), unit)


@pytest.fixture
def montalban(realdata_dir, tmp_path):
    """The 95 real allStar rows, and a DistMass-like table built from their Montalbán mass/age."""
    path = realdata_dir / MONTALBAN
    m = read_fits_columns(path, ["APOGEE_ID", "mass", "mass_16", "mass_84", "age", "age_16", "age_84"])
    dm = Table({"APOGEE_ID": m["APOGEE_ID"], "MASS": m["mass"],
                "MASS_ERR": (m["mass_84"] - m["mass_16"]) / 2,
                "AGE": m["age"].astype(float) * 1e9,                  # DistMass ages are in years
                "AGE_ERR": (m["age_84"] - m["age_16"]).astype(float) / 2 * 1e9,
                "BITMASK": np.zeros(len(m["mass"]), "i8")})
    dm_path = tmp_path / "distmass.fits"
    dm.write(dm_path)
    return path, dm_path, m, dm


# ---------------------------------------------------------------- real rows

def test_real_rows_end_to_end(montalban, tmp_path):
    allstar, dm_path, m, _ = montalban
    out = tmp_path / "labels.h5"
    settings = {"distmass_columns": COLS, "distmass_age_unit": "yr"}
    rc = cli(["--allstar", str(allstar), "--distmass", str(dm_path), "--settings",
              json.dumps(settings), "--out", str(out), "--log", str(tmp_path / "l.log")])
    assert rc == 0
    t = read_table(out)
    assert sorted(t) == sorted(CONTRACT)
    raw = read_allstar(allstar)
    # all 95 have a Gaia id, none is an EXTRATARG duplicate or repeated: every row survives
    assert len(t["source_id"]) == 95
    np.testing.assert_array_equal(t["source_id"], raw["GAIAEDR3_SOURCE_ID"])
    np.testing.assert_array_equal(t["apogee_id"], raw["APOGEE_ID"])
    # yr -> Gyr: the Montalbán ages (Gyr, float32) come back to float32 precision
    np.testing.assert_allclose(t["age_gyr"], m["age"], rtol=1e-6)
    np.testing.assert_allclose(t["mass"], m["mass"], rtol=1e-6)
    flagged = (raw["STARFLAG"] != 0) | ((raw["ASPCAPFLAG"] & ((1 << 19) | (1 << 23))) != 0)
    assert flagged.sum() == 37          # counted independently from the file (STARFLAG != 0)
    for label in ("teff", "logg", "m_h", "teff_err", "m_h_err"):
        np.testing.assert_array_equal(np.isnan(t[label]), flagged)
    np.testing.assert_allclose(t["teff"][~flagged], raw["TEFF"][~flagged])
    # [alpha/M]: also missing where ASPCAPFLAG bit 20 (ALPHA_M_BAD) is set or ASPCAP wrote -9999
    alpha_bad = (flagged | ((raw["ASPCAPFLAG"] & (1 << 20)) != 0) | ~np.isfinite(raw["ALPHA_M"])
                 | (raw["ALPHA_M"] < -9000))
    assert 0 < alpha_bad.sum() < 95
    np.testing.assert_array_equal(np.isnan(t["alpha_m"]), alpha_bad)
    np.testing.assert_allclose(t["alpha_m"][~alpha_bad], raw["ALPHA_M"][~alpha_bad])
    # the CLI resets logging handlers, so read its --log file for the path taken
    assert "row-aligned" in (tmp_path / "l.log").read_text()
    assert read_attrs(out)["distmass_match"] == "aligned"


def test_real_rows_misaligned_distmass_falls_back_to_join(montalban, tmp_path, caplog):
    allstar, _, m, dm = montalban
    shuffled = dm[np.random.default_rng(0).permutation(len(dm))]
    shuffled = shuffled[:-5]                 # 5 stars have no DistMass row at all
    missing_ids = set(dm["APOGEE_ID"]) - set(shuffled["APOGEE_ID"])
    d = tmp_path / "dm_shuffled.fits"
    shuffled.write(d)
    caplog.set_level(logging.INFO)
    t, counts = build_labels(allstar, d, COLS, "yr")
    assert counts["distmass_match"] == "join" and "join on APOGEE_ID" in caplog.text
    assert counts["n_without_distmass_row"] == 5
    no_dm = np.isin(t["apogee_id"], list(missing_ids))
    assert np.isnan(t["mass"][no_dm]).all() and np.isnan(t["age_gyr"][no_dm]).all()
    np.testing.assert_allclose(t["mass"][~no_dm], m["mass"][~no_dm], rtol=1e-6)
    np.testing.assert_allclose(t["age_gyr_err"][~no_dm],
                               (m["age_84"] - m["age_16"])[~no_dm] / 2, rtol=1e-5)


# ---------------------------------------------------------------- row rules

def test_duplicate_spectra_gaia_zero_and_repeated_source_ids(tmp_path):
    a = make_allstar(7)
    a["EXTRATARG"] = [0, 16, 16 | 1, 1, 8, 0, 0]          # only bit 4 (=16) is a duplicate
    a["GAIAEDR3_SOURCE_ID"] = [11, 22, 33, 0, 55, 66, 66]  # row 3 unmatched; 5 and 6 share an id
    a["STARFLAG"] = [0, 0, 0, 0, 0, 4, 0]                  # row 5 is flagged, so row 6 is kept
    t, counts = run(tmp_path, a, make_distmass(a["APOGEE_ID"]))
    assert list(t["source_id"]) == [11, 55, 66]
    assert list(t["apogee_id"]) == [a["APOGEE_ID"][i] for i in (0, 4, 6)]
    assert counts["n_duplicate_spectra_dropped"] == 2
    assert counts["n_no_source_id_dropped"] == 1
    assert counts["n_repeated_source_id_dropped"] == 1
    # equal flags: the lowest allStar row wins (deterministic)
    a["STARFLAG"] = 0
    t, _ = run(tmp_path, a, make_distmass(a["APOGEE_ID"]))
    assert t["apogee_id"][-1] == a["APOGEE_ID"][5]


def test_flags_by_bit_and_sentinels(tmp_path):
    a = make_allstar(7)
    a["ASPCAPFLAG"] = [1 << 19, 1 << 23, 1 << 18, 1 << 20, 0, 0, (1 << 19) | 64]
    a["STARFLAG"] = [0, 0, 0, 0, 1, 0, 0]
    a["TEFF"][5] = -9999.0
    t, _ = run(tmp_path, a, make_distmass(a["APOGEE_ID"]))
    expect_nan = np.array([1, 1, 0, 0, 1, 0, 1], bool)
    for label in ("teff", "teff_err", "logg", "logg_err", "m_h", "m_h_err"):
        want = expect_nan | (np.arange(7) == 5) if label.startswith("teff") else expect_nan
        np.testing.assert_array_equal(np.isnan(t[label]), want, err_msg=label)
    # flags never touch photometry or DistMass labels
    assert np.isfinite(t["j"]).all() and np.isfinite(t["mass"]).all()


def test_bad_magnitudes(tmp_path):
    a = make_allstar(4)
    a["J"] = np.array([99.999, np.nan, 10.0, 10.0], "f4")
    a["H_ERR"] = np.array([0.02, 0.02, 99.999, 0.02], "f4")
    t, _ = run(tmp_path, a, make_distmass(a["APOGEE_ID"]))
    np.testing.assert_array_equal(np.isnan(t["j"]), [1, 1, 0, 0])
    np.testing.assert_array_equal(np.isnan(t["j_err"]), [1, 1, 0, 0])
    np.testing.assert_array_equal(np.isnan(t["h"]), [0, 0, 0, 0])
    np.testing.assert_array_equal(np.isnan(t["h_err"]), [0, 0, 1, 0])


@pytest.mark.parametrize("unit, age, err, want, want_err", [
    ("yr", 4.5e9, 1.0e9, 4.5, 1.0),
    ("Gyr", 4.5, 1.0, 4.5, 1.0),
    # 10**9.5 yr = 3.1623 Gyr; 0.1 dex -> 3.1623 * ln(10) * 0.1 = 0.72814 Gyr
    ("log10yr", 9.5, 0.1, 3.16227766, 0.72814134),
])
def test_age_unit_conversion(tmp_path, unit, age, err, want, want_err):
    a = make_allstar(3)
    d = make_distmass(a["APOGEE_ID"], age_yr=np.full(3, age))
    d["AGE_ERR"] = err
    t, _ = run(tmp_path, a, d, unit=unit)
    np.testing.assert_allclose(t["age_gyr"], want, rtol=1e-7)
    np.testing.assert_allclose(t["age_gyr_err"], want_err, rtol=1e-7)


def test_wrong_age_unit_is_caught(tmp_path):
    a = make_allstar(3)
    d = make_distmass(a["APOGEE_ID"], age_yr=[2.0, 5.0, 9.0])   # Gyr values, declared as yr
    with pytest.raises(StarfmInputError, match="distmass_age_unit"):
        run(tmp_path, a, d, unit="yr")


def test_bitmask_outside_grid(tmp_path):
    a = make_allstar(4)
    d = make_distmass(a["APOGEE_ID"], bitmask=[0, 2, 2 | 1, 4])
    t, counts = run(tmp_path, a, d)
    for col in ("mass", "mass_err", "age_gyr", "age_gyr_err"):
        np.testing.assert_array_equal(np.isnan(t[col]), [0, 1, 1, 0], err_msg=col)
    assert counts["n_distmass_outside_grid"] == 2


def test_join_with_duplicate_distmass_ids(tmp_path):
    a = make_allstar(3)
    ids = list(a["APOGEE_ID"])
    # id 0 twice: first row outside the grid, second usable -> the usable one is taken
    d = make_distmass([ids[0], ids[2], ids[0], ids[1]], mass=[9.0, 1.3, 1.1, 1.2],
                      bitmask=[2, 0, 0, 0])
    t, counts = run(tmp_path, a, d)
    assert counts["distmass_match"] == "join"
    np.testing.assert_allclose(t["mass"], [1.1, 1.2, 1.3])
    assert counts["n_distmass_duplicate_ids"] == 1 and counts["n_distmass_conflicting_ids"] == 1


# ---------------------------------------------------------------- bad input

def test_missing_distmass_column_lists_what_the_file_has(tmp_path):
    a = make_allstar(3)
    d = make_distmass(a["APOGEE_ID"])
    d.rename_column("AGE", "AGE_COR_SS")
    with pytest.raises(StarfmInputError, match=r"missing column\(s\) \['AGE'\].*AGE_COR_SS"):
        run(tmp_path, a, d)
    # the configured names are honoured
    t, _ = run(tmp_path, a, d, cols=dict(COLS, age="AGE_COR_SS"))
    np.testing.assert_allclose(t["age_gyr"], 4.0)


def test_missing_allstar_column(tmp_path):
    a = make_allstar(3)
    a.remove_column("EXTRATARG")
    with pytest.raises(StarfmInputError, match="allStar.fits.*EXTRATARG"):
        run(tmp_path, a, make_distmass(a["APOGEE_ID"]))


def test_empty_table(tmp_path):
    a = make_allstar(0)
    with pytest.raises(StarfmInputError, match="allStar.fits.*empty"):
        run(tmp_path, a, make_distmass([]))


def test_all_nan_column(tmp_path):
    a = make_allstar(3, TEFF=np.full(3, np.nan, "f4"))
    with pytest.raises(StarfmInputError, match="allStar.fits.*TEFF"):
        run(tmp_path, a, make_distmass(a["APOGEE_ID"]))
    a = make_allstar(3)
    with pytest.raises(StarfmInputError, match="distmass.fits.*MASS"):
        run(tmp_path, a, make_distmass(a["APOGEE_ID"], mass=[np.nan] * 3))


def test_no_gaia_ids_at_all(tmp_path):
    a = make_allstar(3, GAIAEDR3_SOURCE_ID=np.zeros(3, "i8"))
    with pytest.raises(StarfmInputError, match="no row left"):
        run(tmp_path, a, make_distmass(a["APOGEE_ID"]))


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "allStar.fits"
    bad.write_bytes(b"this is not a FITS file at all" * 100)
    with pytest.raises(StarfmInputError, match=str(bad)):
        read_allstar(bad)
    # a truncated real FITS file (header intact, data cut off)
    good = tmp_path / "good.fits"
    make_allstar(500).write(good)
    (tmp_path / "cut.fits").write_bytes(good.read_bytes()[:6000])
    with pytest.raises(StarfmInputError, match="cut.fits"):
        read_allstar(tmp_path / "cut.fits")
    with pytest.raises(StarfmInputError, match="nothing.fits.*not found"):
        read_allstar(tmp_path / "nothing.fits")
    fits.PrimaryHDU().writeto(tmp_path / "image.fits")
    with pytest.raises(StarfmInputError, match="image.fits.*no HDU 1"):
        read_allstar(tmp_path / "image.fits")


def test_bad_column_json_and_cli_exit_code(tmp_path, capsys):
    a, d = write(tmp_path, make_allstar(2), make_distmass(["x", "y"]))
    with pytest.raises(StarfmInputError, match="not valid JSON"):
        build_labels(a, d, "{mass: MASS", "yr")
    with pytest.raises(StarfmInputError, match=r"missing key\(s\) \['age_err'\]"):
        build_labels(a, d, {k: v for k, v in COLS.items() if k != "age_err"}, "yr")
    rc = cli(["--allstar", str(tmp_path / "none.fits"), "--distmass", str(d),
              "--settings", json.dumps({"distmass_columns": COLS}), "--out", str(tmp_path / "o.h5")])
    assert rc == 1 and "none.fits" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()


def test_read_allstar_reads_only_what_is_asked(montalban):
    allstar = montalban[0]
    cols = read_allstar(allstar, ["apogee_id", "TEFF"])          # case-insensitive names
    assert list(cols) == ["apogee_id", "TEFF"]
    assert cols["TEFF"].dtype.isnative and cols["apogee_id"].dtype.kind == "U"
    assert set(ALLSTAR_COLUMNS) <= set(read_allstar(allstar))
