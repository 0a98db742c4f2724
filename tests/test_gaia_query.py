"""gaia-source / gaia-xp stages: batching, cache + resume, retries with back-off, give-up naming
the batch, missing products reported, BP/RP-less stars reconciled, the command lines."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits

from starfm import gaia_query
from starfm.gaia_archive import PermanentArchiveError, TransientArchiveError
from starfm.gaia_query import (GaiaBatchError, batch_cache_path, fetch_gaia_source, fetch_xp,
                               make_batches, read_allstar_source_ids)
from starfm.errors import StarfmInputError
from starfm.tables import read_attrs, read_table
from starfm.mock.archive import MockGaiaArchive
from starfm.xp_tables import GAIA_SOURCE_COLUMNS, XP_COLUMNS
from test_gaia_archive import make_store

warnings.filterwarnings("ignore", module="astropy")


@pytest.fixture()
def store(tmp_path):
    gs, xp = make_store(tmp_path / "archive", n=40)
    return tmp_path / "archive", gs, xp


def write_allstar(path, ids):
    """A tiny allStar-like FITS with a few other columns around GAIAEDR3_SOURCE_ID."""
    n = len(ids)
    cols = [fits.Column("APOGEE_ID", "18A", array=np.array([f"2M{i:016d}" for i in range(n)])),
            fits.Column("TEFF", "E", array=np.full(n, 4800.0)),
            fits.Column("GAIAEDR3_SOURCE_ID", "K", array=np.asarray(ids, np.int64)),
            fits.Column("SPEC", "100E", array=np.zeros((n, 100)))]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols)]).writeto(path)
    return path


def test_allstar_ids_nonzero_unique_sorted(tmp_path):
    path = write_allstar(tmp_path / "allStar.fits", [5, 0, 3, 5, 0, 9])
    assert read_allstar_source_ids(path).tolist() == [3, 5, 9]
    with pytest.raises(StarfmInputError, match="not found"):
        read_allstar_source_ids(tmp_path / "nope.fits")
    zero = write_allstar(tmp_path / "zero.fits", [0, 0])
    with pytest.raises(StarfmInputError, match="0"):
        read_allstar_source_ids(zero)
    with pytest.raises(StarfmInputError, match="GAIA_ID"):
        read_allstar_source_ids(path, column="GAIA_ID")


def test_batches_cover_every_id_once():
    ids = np.random.default_rng(0).permutation(np.arange(1, 12_346))
    batches = make_batches(np.concatenate([ids, ids[:10]]), 5000)  # duplicates collapse
    assert [len(b) for b in batches] == [5000, 5000, 2345]
    allb = np.concatenate(batches)
    np.testing.assert_array_equal(allb, np.arange(1, 12_346))  # each once, sorted
    with pytest.raises(StarfmInputError, match="5000"):
        make_batches(ids, 5001)


def test_xp_end_to_end_missing_and_reconciled(store, tmp_path):
    directory, gs, xp = store
    archive = MockGaiaArchive(directory, xp_format="votable")
    out, missing = tmp_path / "xp.h5", tmp_path / "missing.txt"
    summary = fetch_xp(gs["source_id"], archive, tmp_path / "cache", out, missing, batch_size=7,
                       progress=False)
    assert all(len(ids) <= 7 for _, ids in archive.calls)
    requested = np.concatenate([ids for _, ids in archive.calls])
    np.testing.assert_array_equal(np.sort(requested), gs["source_id"])  # each id asked once
    got = read_table(out)
    assert list(got) == sorted(XP_COLUMNS)
    np.testing.assert_array_equal(got["source_id"], xp["source_id"])
    np.testing.assert_array_equal(got["bp_coefficients"], xp["bp_coefficients"])
    # the BP-less and RP-less stars are kept, with NaN and zero counts in the missing band
    assert got["bp_n_parameters"][0] == 0 and np.all(np.isnan(got["bp_coefficients"][0]))
    assert got["rp_n_relevant_bases"][1] == 0 and np.all(np.isfinite(got["bp_coefficients"][1]))
    no_xp = np.setdiff1d(gs["source_id"], xp["source_id"])
    assert len(no_xp) > 0
    np.testing.assert_array_equal(np.loadtxt(missing, dtype=np.int64, ndmin=1), no_xp)
    assert summary["n_missing"] == len(no_xp) == read_attrs(out)["n_missing"]


def test_gaia_source_missing_ids_are_nan_rows(store, tmp_path):
    directory, gs, _ = store
    archive = MockGaiaArchive(directory)
    ids = np.concatenate([gs["source_id"], [1, 2]])  # 1 and 2 are not in gaia_source
    out = tmp_path / "gs.h5"
    summary = fetch_gaia_source(ids, archive, tmp_path / "cache", out, batch_size=16, progress=False)
    got = read_table(out)
    assert sorted(got) == sorted(GAIA_SOURCE_COLUMNS)
    np.testing.assert_array_equal(got["source_id"], np.sort(ids))
    assert np.isnan(got["parallax"][:2]).all() and (got["astrometric_params_solved"][:2] == 0).all()
    np.testing.assert_array_equal(got["parallax"][2:], gs["parallax"])
    np.testing.assert_array_equal(got["astrometric_params_solved"][2:], gs["astrometric_params_solved"])
    assert summary["missing_source_ids"].tolist() == [1, 2] and read_attrs(out)["n_missing"] == 2


def test_resume_after_permanent_failure_does_not_refetch(store, tmp_path):
    directory, gs, _ = store
    cache = tmp_path / "cache"
    out, missing = tmp_path / "xp.h5", tmp_path / "missing.txt"
    failing = MockGaiaArchive(directory, fail_on_call={3: PermanentArchiveError("HTTP 400")})
    with pytest.raises(GaiaBatchError) as err:
        fetch_xp(gs["source_id"], failing, cache, out, missing, batch_size=5, progress=False)
    batches = make_batches(gs["source_id"], 5)
    msg = str(err.value)
    assert "batch 3 of 8" in msg and str(batches[3][0]) in msg and str(batches[3][-1]) in msg
    assert batch_cache_path(cache, "xp_continuous", 3, batches[3]).name in msg
    assert not out.exists()
    assert len(list(cache.glob("*.h5"))) == 3  # batches 0-2 cached

    again = MockGaiaArchive(directory)
    fetch_xp(gs["source_id"], again, cache, out, missing, batch_size=5, progress=False)
    asked = [ids.tolist() for _, ids in again.calls]
    assert asked == [b.tolist() for b in batches[3:]]  # finished batches not requested again
    full = MockGaiaArchive(directory)
    fetch_xp(gs["source_id"], full, tmp_path / "cache2", tmp_path / "xp2.h5", tmp_path / "m2.txt",
             batch_size=5, progress=False)
    a, b = read_table(out), read_table(tmp_path / "xp2.h5")
    for k in XP_COLUMNS:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # resumed output == one-go output

    third = MockGaiaArchive(directory)  # everything cached: no call at all
    fetch_xp(gs["source_id"], third, cache, out, missing, batch_size=5, progress=False)
    assert third.calls == []


def test_retries_with_doubling_backoff_then_success(store, tmp_path, monkeypatch):
    directory, gs, _ = store
    slept = []
    monkeypatch.setattr(gaia_query.time, "sleep", slept.append)  # the stage must not really wait
    archive = MockGaiaArchive(directory, fail_first=3)
    fetch_gaia_source(gs["source_id"], archive, tmp_path / "c", tmp_path / "gs.h5", batch_size=50,
                      max_retries=5, backoff=2.0, progress=False)
    assert slept == [2.0, 4.0, 8.0]
    assert len(archive.calls) == 4


def test_gives_up_after_max_retries_naming_the_batch(store, tmp_path):
    directory, gs, _ = store
    slept = []
    archive = MockGaiaArchive(directory, fail_first=100)
    with pytest.raises(GaiaBatchError, match=r"batch 0 of 1 .*after 3 attempts") as err:
        fetch_gaia_source(gs["source_id"], archive, tmp_path / "c", tmp_path / "gs.h5",
                          max_retries=2, backoff=0.5, sleep=slept.append, progress=False)
    assert isinstance(err.value.__cause__, TransientArchiveError)
    assert slept == [0.5, 1.0] and len(archive.calls) == 3
    assert not (tmp_path / "gs.h5").exists()


def test_cli_both_stages(store, tmp_path):
    directory, gs, xp = store
    allstar = write_allstar(tmp_path / "allStar.fits", np.concatenate([gs["source_id"], [0, 0]]))
    common = ["--allstar", str(allstar), "--archive", "mock",
              "--mock-archive", str(directory / "manifest.json"),
              "--settings", '{"batch_size": 5000, "max_retries": 5, "backoff_seconds": 2.0}',
              "--no-progress"]
    out = tmp_path / "results" / "gaia"
    rc = gaia_query.cli_source(common + ["--cache-dir", str(out / "cache" / "gs"),
                                         "--out", str(out / "gaia_source.h5"), "--log", str(tmp_path / "gs.log")])
    assert rc == 0
    assert len(read_table(out / "gaia_source.h5")["source_id"]) == len(gs["source_id"])
    rc = gaia_query.cli_xp(common + ["--cache-dir", str(out / "cache" / "xp"), "--out", str(out / "xp.h5"),
                                     "--missing", str(out / "missing.txt"), "--log", str(tmp_path / "xp.log"),
                                     "--xp-format", "csv"])
    assert rc == 0
    np.testing.assert_array_equal(read_table(out / "xp.h5")["source_id"], xp["source_id"])
    assert "without XP" in (tmp_path / "xp.log").read_text()
    # bad input: one clear error line, exit 1
    assert gaia_query.cli_xp(["--allstar", str(tmp_path / "nope.fits"), "--archive", "mock",
                              "--mock-archive", str(directory / "manifest.json"), "--cache-dir", str(tmp_path / "c"),
                              "--out", str(tmp_path / "x.h5"), "--missing", str(tmp_path / "m.txt")]) == 1
