"""The dust Monte Carlo stage: the per-sample rules, the statistics, determinism, bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import healpy
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import mad_std

from starfm.dust_map import DISTMODS, Combined19Map, combined19_path, write_combined19
from starfm.dust_mc import cli, dust_extinction, monte_carlo_ln_ebv
from starfm.errors import StarfmInputError
from starfm.tables import read_attrs, read_table, write_table

# nside-1 map, one line of sight per base pixel (pixel 11 left uncovered)
CONST, ZERO, HUGE, RISING, STEEP = 0, 1, 2, 3, 4
UNCOVERED = 11


def _curves() -> np.ndarray:
    curves = np.empty((11, len(DISTMODS)))
    curves[CONST] = 0.5                       # E(B-V) 0.5 at every distance
    curves[ZERO] = 0.0                        # exactly 0 -> e^-7
    curves[HUGE] = 20.0                       # > 10 -> NaN
    curves[RISING] = 0.05 * (DISTMODS - 3.0)  # negative when extrapolated below dm 3 (40 pc)
    curves[STEEP] = 0.4 * DISTMODS            # 6.0 at dm 15 ... 7.55 at the grid end, > 10 at 99 kpc
    curves[5:] = np.linspace(0.1, 1.0, len(DISTMODS)) * np.arange(1, 7)[:, None]
    return curves


@pytest.fixture(scope="module")
def small_map() -> Combined19Map:
    return Combined19Map(np.ones(11, dtype=np.uint32), np.arange(11, dtype=np.uint64),
                         best_fit=_curves())


def _lb(pixel: int) -> tuple[float, float]:
    theta, phi = healpy.pix2ang(1, pixel, nest=True)
    return float(np.degrees(phi)), float(90.0 - np.degrees(theta))


def _run(dust_map, pixels, plx, err, far, **kw):
    lb = np.array([_lb(p) for p in pixels])
    return monte_carlo_ln_ebv(dust_map, lb[:, 0], lb[:, 1], np.asarray(plx, float),
                              np.asarray(err, float), np.asarray(far, bool), progress=False, **kw)


def test_per_sample_rules(small_map):
    pixels = [CONST, ZERO, HUGE, RISING, RISING, CONST, CONST, UNCOVERED, STEEP, STEEP]
    plx = [1.0, 1.0, 1.0, 50.0, 0.5, np.nan, 0.5, 1.0, -0.3, -0.3]
    err = [0.01, 0.01, 0.01, 0.001, 0.5, 0.01, 0.5, 0.01, 0.05, 0.05]
    far = [False] * 8 + [True, False]
    out = _run(small_map, pixels, plx, err, far, n_samples=2000, seed=3)
    med, spread, n = out["ln_ebv_median"], out["ln_ebv_mad_std"], out["n_valid_samples"]
    assert med[0] == pytest.approx(np.log(0.5), abs=1e-15) and spread[0] == 0 and n[0] == 2000
    assert med[1] == -7.0 and spread[1] == 0 and n[1] == 2000          # E = 0 -> e^-7
    assert np.isnan(med[2]) and np.isnan(spread[2]) and n[2] == 0       # E > 10 -> NaN
    # 20 pc (dm 1.5): extrapolated E(B-V) = 0.05 * (1.5 - 3) < 0 -> NaN
    assert n[3] == 0 and np.isnan(med[3])
    # parallax 0.5 +- 0.5 mas: P(draw <= 0) = Phi(-1) = 0.159; 5 sigma of a binomial(2000)
    # is 82 samples, so n_valid must be 1683 +- 82 (and only d > 0 samples are kept)
    assert abs(int(n[4]) - 2000 * (1 - 0.1587)) < 82
    assert abs(int(n[6]) - 2000 * (1 - 0.1587)) < 82 and med[6] == pytest.approx(np.log(0.5))
    assert n[5] == 0 and np.isnan(med[5])                               # no parallax
    assert n[7] == 0 and np.isnan(med[7])                               # outside the map
    # raw parallax <= 0 with good astrometry: every sample at 99 kpc (dm 19.98, extrapolated:
    # 0.4 * 19.98 = 7.99 < 10); the same star without the flag has only negative draws
    lon, lat = _lb(STEEP)
    assert n[8] == 2000 and spread[8] == 0
    assert med[8] == np.log(small_map(lon, lat, 99.0)[0])
    assert med[8] == pytest.approx(np.log(0.4 * (5 * np.log10(99.0) + 10)), rel=1e-12)
    assert n[9] == 0


def test_negative_draws_far_rule(small_map):
    """``negative_draws="far"``: non-positive draws lie at the far distance instead of being
    dropped; positive draws are unchanged (same seed), and the paper's rule is the default."""
    pixels, plx, err, far = [STEEP, STEEP, CONST], [0.5, -0.3, 1.0], [0.5, 0.05, 0.01], [False] * 3
    paper = _run(small_map, pixels, plx, err, far, n_samples=2000, seed=3)
    default = _run(small_map, pixels, plx, err, far, n_samples=2000, seed=3, negative_draws="nan")
    for k in paper:
        np.testing.assert_array_equal(paper[k], default[k])
    out = _run(small_map, pixels, plx, err, far, n_samples=2000, seed=3, negative_draws="far")
    assert (out["n_valid_samples"] == 2000).all()
    lon, lat = _lb(STEEP)
    assert out["ln_ebv_median"][1] == np.log(small_map(lon, lat, 99.0)[0])   # every draw negative
    # the far draws move the median of the low-S/N star up (farther, more dust on a rising map)
    assert out["ln_ebv_median"][0] > paper["ln_ebv_median"][0]
    assert out["ln_ebv_median"][2] == paper["ln_ebv_median"][2]
    with pytest.raises(StarfmInputError, match="negative_draws"):
        _run(small_map, pixels, plx, err, far, n_samples=10, negative_draws="zero")


def test_matches_a_direct_computation(small_map):
    """Same draws (documented order) pushed through the map one by one and astropy's mad_std."""
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 12, 40)
    plx = rng.uniform(-0.2, 2.0, 40)
    err = rng.uniform(0.01, 0.6, 40)
    far = rng.random(40) < 0.2
    out = _run(small_map, pixels, plx, err, far, n_samples=300, seed=5, chunk_stars=7)
    z = np.random.default_rng(5).standard_normal((40, 300))
    lb = np.array([_lb(p) for p in pixels])
    d = 1.0 / (plx[:, None] + err[:, None] * z)
    d[far] = 99.0
    lon, lat = np.repeat(lb[:, 0], 300), np.repeat(lb[:, 1], 300)
    with np.errstate(all="ignore"):
        ebv = small_map(lon, lat, np.where(d > 0, d, 1.0).ravel()).reshape(d.shape)
        ebv[(d <= 0) | (ebv > 10) | (ebv < 0)] = np.nan
        ln = np.where(ebv == 0, -7.0, np.log(ebv))
    assert np.array_equal(out["n_valid_samples"], np.sum(~np.isnan(ln), axis=1))
    some = out["n_valid_samples"] > 0
    assert 10 < some.sum() < 40                     # both kinds of star are present
    # identical arithmetic for the median; mad_std up to rounding of astropy's masked median
    assert np.array_equal(out["ln_ebv_median"][some], np.nanmedian(ln[some], axis=1))
    np.testing.assert_allclose(out["ln_ebv_mad_std"][some],
                               mad_std(ln[some], axis=1, ignore_nan=True), rtol=1e-12, atol=0)
    assert np.isnan(out["ln_ebv_median"][~some]).all()


def test_seeded_and_independent_of_chunking(small_map):
    rng = np.random.default_rng(4)
    args = (rng.integers(0, 11, 25), rng.uniform(0.05, 1, 25), rng.uniform(0.01, 0.3, 25),
            np.zeros(25, bool))
    a = _run(small_map, *args, n_samples=200, seed=9)
    b = _run(small_map, *args, n_samples=200, seed=9, chunk_stars=3)
    c = _run(small_map, *args, n_samples=200, seed=10)
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True)
    assert not np.array_equal(a["ln_ebv_mad_std"], c["ln_ebv_mad_std"])


# ---------------------------------------------------------------- the stage, from files

def _write_inputs(tmp_path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    write_combined19(combined19_path(tmp_path / "dust"), np.ones(11), np.arange(11), _curves())
    ids = rng.choice(np.arange(10**15, 10**15 + 10**6), n, replace=False)
    allstar_ids = np.concatenate([ids, ids[:5], [0, 0]])            # duplicate spectra, unmatched
    glon = np.concatenate([rng.uniform(0, 360, n), rng.uniform(0, 360, 7)])
    glat = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1, 1, n))), np.zeros(7)])
    cols = [fits.Column("GAIAEDR3_SOURCE_ID", "K", array=allstar_ids),
            fits.Column("GLON", "D", array=glon), fits.Column("GLAT", "D", array=glat),
            fits.Column("APOGEE_ID", "18A", array=[f"2M{i:016d}" for i in range(n + 7)])]
    fits.BinTableHDU.from_columns(cols).writeto(tmp_path / "allStar.fits")
    gaia_ids = ids[:-3]                                              # 3 stars unknown to Gaia
    plx = rng.uniform(0.1, 2.0, len(gaia_ids))
    plx[:4] = [-0.2, -5.0, -5.0, np.nan]
    err = rng.uniform(0.01, 0.2, len(gaia_ids))
    err[:3] = [0.05, 0.5, 0.05]
    ruwe = np.full(len(gaia_ids), 1.0)
    ruwe[2] = 2.0
    write_table(tmp_path / "gaia_source.h5", {"source_id": gaia_ids, "parallax": plx,
                                              "parallax_error": err, "ruwe": ruwe,
                                              "phot_g_mean_mag": np.full(len(gaia_ids), 12.0)})
    write_table(tmp_path / "parallax.h5", {"source_id": gaia_ids[::-1],
                                           "parallax_corrected": (plx + 0.02)[::-1],
                                           "zero_point": np.full(len(gaia_ids), -0.02)})
    return {"ids": ids, "glon": glon[:n], "glat": glat[:n], "plx": plx, "err": err}


SETTING_KEYS = ("n_samples", "seed", "negative_parallax_distance_kpc", "good_ruwe_max",
                "good_parallax_error_max", "dust_dir")


def _argv(tmp_path, **over):
    """The stage's command line: file paths, plus the dust settings as one --settings JSON."""
    args = {"allstar": tmp_path / "allStar.fits", "gaia-source": tmp_path / "gaia_source.h5",
            "parallax": tmp_path / "parallax.h5", "dust_dir": tmp_path / "dust",
            "n_samples": 100, "seed": 1, "negative_parallax_distance_kpc": 99.0,
            "good_ruwe_max": 1.4, "good_parallax_error_max": 0.1,
            "out": tmp_path / "out" / "extinction.h5", "log": tmp_path / "dust.log"}
    args.update(over)
    settings = {k: (str(v) if k == "dust_dir" else v) for k, v in args.items() if k in SETTING_KEYS}
    argv = [x for k, v in args.items() if k not in SETTING_KEYS for x in (f"--{k}", str(v))]
    return argv + ["--settings", json.dumps(settings)]


def test_stage_end_to_end(tmp_path):
    truth = _write_inputs(tmp_path)
    assert cli(_argv(tmp_path)) == 0
    out = read_table(tmp_path / "out" / "extinction.h5")
    assert set(out) == {"source_id", "ln_ebv_median", "ln_ebv_mad_std", "n_valid_samples"}
    assert np.array_equal(out["source_id"], np.sort(truth["ids"]))    # distinct, nonzero, sorted
    by_id = dict(zip(out["source_id"], out["n_valid_samples"]))
    ids = truth["ids"]
    pix = Combined19Map.from_dust_dir(tmp_path / "dust").pixel_index(truth["glon"], truth["glat"])
    covered = (pix >= 0) & (pix != HUGE)
    # raw parallax -0.2, ruwe 1.0, error 0.05: the 99 kpc rule -> all 100 samples valid on
    # a usable line of sight
    assert by_id[ids[0]] == (100 if covered[0] else 0)
    # parallax -5 mas but error 0.5 / ruwe 2: not far, and every draw is negative (10 sigma)
    assert by_id[ids[1]] == 0 and by_id[ids[2]] == 0
    assert by_id[ids[3]] == 0                              # NaN parallax
    assert all(by_id[i] == 0 for i in ids[-3:])            # not in gaia_source
    attrs = read_attrs(tmp_path / "out" / "extinction.h5")
    assert attrs["n_samples"] == 100 and attrs["n_far"] == 1 and attrs["seed"] == 1
    assert "valid" in attrs["statistics"]
    # same seed, same file; another seed, another result
    assert cli(_argv(tmp_path, out=tmp_path / "again.h5")) == 0
    again = read_table(tmp_path / "again.h5")
    for key in out:
        assert np.array_equal(out[key], again[key], equal_nan=True)
    other = dust_extinction(tmp_path / "allStar.fits", tmp_path / "gaia_source.h5",
                            tmp_path / "parallax.h5", tmp_path / "dust", tmp_path / "o.h5",
                            n_samples=100, seed=2)
    assert not np.array_equal(other["ln_ebv_mad_std"], out["ln_ebv_mad_std"], equal_nan=True)
    assert "wrote" in (tmp_path / "dust.log").read_text()


@pytest.mark.parametrize("problem, match", [
    ("no_map", "combine19.h5"),
    ("no_allstar", "not found"),
    ("missing_column", "ruwe"),
    ("empty_parallax", "empty"),
    ("all_nan_parallax", "all NaN"),
    ("duplicate_ids", "duplicate"),
    ("glat_range", "GLAT"),
    ("radians", "radians"),
    ("units", "mas"),
    ("n_samples", "n_samples"),
])
def test_bad_input_is_a_clear_error(tmp_path, problem, match, capsys):
    _write_inputs(tmp_path, n=150)
    over = {}
    if problem == "no_map":
        over["dust_dir"] = tmp_path / "nowhere"
    elif problem == "no_allstar":
        over["allstar"] = tmp_path / "missing.fits"
    elif problem == "missing_column":
        g = read_table(tmp_path / "gaia_source.h5")
        del g["ruwe"]
        write_table(tmp_path / "gaia_source.h5", g)
    elif problem == "empty_parallax":
        write_table(tmp_path / "parallax.h5", {"source_id": np.zeros(0, np.int64),
                                               "parallax_corrected": np.zeros(0)})
    elif problem == "all_nan_parallax":
        g = read_table(tmp_path / "gaia_source.h5")
        g["parallax"][:] = np.nan
        write_table(tmp_path / "gaia_source.h5", g)
    elif problem == "duplicate_ids":
        p = read_table(tmp_path / "parallax.h5")
        p["source_id"][1] = p["source_id"][0]
        write_table(tmp_path / "parallax.h5", p)
    elif problem in ("glat_range", "radians"):
        with fits.open(tmp_path / "allStar.fits", mode="update") as h:
            if problem == "glat_range":
                h[1].data["GLAT"][0] = 120.0
            else:
                h[1].data["GLON"][:] = np.radians(h[1].data["GLON"])
                h[1].data["GLAT"][:] = np.radians(h[1].data["GLAT"])
    elif problem == "units":
        p = read_table(tmp_path / "parallax.h5")
        p["parallax_corrected"] = p["parallax_corrected"] * 1000.0     # microarcseconds
        write_table(tmp_path / "parallax.h5", p)
    elif problem == "n_samples":
        over["n_samples"] = 0
    assert cli(_argv(tmp_path, **over)) == 1
    err = capsys.readouterr().err
    assert "starfm: error:" in err and match in err
    assert not (tmp_path / "out" / "extinction.h5").exists()
    with pytest.raises(StarfmInputError, match=match):
        argv = _argv(tmp_path, **over)
        kw = dict(zip(argv[::2], argv[1::2]))
        settings = json.loads(kw["--settings"])
        dust_extinction(kw["--allstar"], kw["--gaia-source"], kw["--parallax"], settings["dust_dir"],
                        kw["--out"], n_samples=settings["n_samples"])


def test_help_mentions_every_option():
    proc = subprocess.run([sys.executable, "-m", "starfm", "dust", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    for opt in ("--allstar", "--gaia-source", "--parallax", "--dust-map", "--settings", "--out",
                "--log", "n_samples", "seed", "negative_parallax_distance_kpc", "good_ruwe_max",
                "good_parallax_error_max", "dust_dir"):
        assert opt in proc.stdout
