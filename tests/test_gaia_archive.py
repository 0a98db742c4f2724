"""Gaia archive clients: the mock serves exactly the real files' columns and dtypes per format,
and the astroquery client (with a monkeypatched ``Gaia``) returns real-format answers and maps
failures to transient / permanent errors."""
from __future__ import annotations

import json
import warnings
import zipfile

import numpy as np
import pytest
import requests
from astropy.table import Table

from starfm.archive_formats import read_datalink_product
from starfm.gaia_archive import (AstroqueryGaiaArchive, PermanentArchiveError, TransientArchiveError,
                                 classify_archive_error)
from starfm.errors import StarfmInputError
from starfm.tables import write_table
from starfm.mock.archive import MockGaiaArchive
from starfm.xp_tables import GAIA_SOURCE_COLUMNS, parse_gaia_source, parse_xp_tables

warnings.filterwarnings("ignore", module="astropy")


def make_store(directory, n=40, seed=0, xp_format="fits", no_xp_every=7):
    """A tiny mock archive store in the contract's format; every ``no_xp_every``-th star has
    no XP at all (absent from the XP store), star 1 lacks BP and star 2 lacks RP."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    sid = np.unique(rng.integers(10**15, 10**18, n + 10, dtype=np.int64))[:n]
    gs = {"source_id": sid, "parallax": rng.normal(1, 0.5, n), "ecl_lat": rng.uniform(-90, 90, n),
          "astrometric_params_solved": np.where(np.arange(n) % 3, 31, 95).astype(np.int16)}
    for c in GAIA_SOURCE_COLUMNS:
        gs.setdefault(c, rng.uniform(0.5, 2, n).astype(np.float32))
    write_table(directory / "gaia_source.h5", gs)
    has_xp = np.arange(n) % no_xp_every != 0
    m = int(has_xp.sum())
    xp = {"source_id": sid[has_xp]}
    for band in ("bp", "rp"):
        coef = rng.normal(0, 100, (m, 55))
        err = rng.uniform(0.1, 2, (m, 55)).astype(np.float32)
        npar = np.full(m, 55, np.int16)
        lost = 0 if band == "bp" else 1  # index among stars with XP
        coef[lost], err[lost], npar[lost] = np.nan, np.nan, 0
        xp.update({f"{band}_coefficients": coef, f"{band}_coefficient_errors": err,
                   f"{band}_n_parameters": npar,
                   f"{band}_n_relevant_bases": np.where(npar > 0, rng.integers(5, 56, m), 0).astype(np.int16),
                   f"{band}_standard_deviation": np.where(npar > 0, rng.uniform(1, 1.2, m), np.nan).astype(np.float32)})
    write_table(directory / "xp_continuous.h5", xp)
    (directory / "manifest.json").write_text(json.dumps({"xp_format": xp_format}))
    return gs, xp


@pytest.fixture()
def store(tmp_path):
    gs, xp = make_store(tmp_path / "archive")
    return tmp_path / "archive", gs, xp


REAL_XP_FILE = {
    "votable": "XP_CONTINUOUS_RAW_with_missing_BP.xml",
    "votable_plain": "XP_CONTINUOUS_RAW_with_missing_BP_plain.xml",
    "fits": "XP_CONTINUOUS_RAW_with_missing_BP.fits",
    "csv": "XP_CONTINUOUS_RAW_with_missing_BP.csv",
    "ecsv": "XP_CONTINUOUS_RAW_with_missing_BP.ecsv",
}


def _as_table(obj):
    return obj.to_table() if hasattr(obj, "to_table") else obj


@pytest.mark.parametrize("fmt", list(REAL_XP_FILE))
def test_mock_xp_matches_real_file_format(realdata_dir, store, fmt):
    """Same column names, order and dtypes as the real archive file of that format, same kind
    of container (VOTable TableElement / Table), and the values come back exactly."""
    directory, _, xp = store
    archive = MockGaiaArchive(directory, xp_format=fmt)
    answer = archive.load_xp_continuous(xp["source_id"])
    (name, tables), = answer.items()
    assert name.startswith("XP_CONTINUOUS") and len(tables) == 1
    real_path = realdata_dir / "xp" / "gaiaxpy" / "xp_continuous" / REAL_XP_FILE[fmt]
    real = read_datalink_product(real_path.name, real_path.read_bytes())[0]
    assert type(tables[0]) is type(real)  # TableElement for .xml, Table otherwise
    mock_t, real_t = _as_table(tables[0]), _as_table(real)
    assert mock_t.colnames == real_t.colnames
    for c in real_t.colnames:
        if real_t[c].dtype.kind == "U":  # CSV text cells: the string width differs
            assert mock_t[c].dtype.kind == "U", c
        else:
            assert mock_t[c].dtype == real_t[c].dtype, c
    # correlations present: 1485 zeros per band where the band exists
    parsed = parse_xp_tables(answer)
    np.testing.assert_array_equal(parsed["source_id"], xp["source_id"])
    np.testing.assert_array_equal(parsed["bp_coefficients"], xp["bp_coefficients"])  # NaN == NaN
    np.testing.assert_array_equal(parsed["rp_coefficient_errors"], xp["rp_coefficient_errors"])
    for band in ("bp", "rp"):
        for k in ("n_parameters", "n_relevant_bases", "standard_deviation"):
            np.testing.assert_array_equal(parsed[f"{band}_{k}"], xp[f"{band}_{k}"], err_msg=k)


@pytest.mark.parametrize("fmt", ["votable", "fits", "csv"])
def test_mock_missing_band_looks_like_archive(store, fmt):
    """A missing band is null/empty in the served file, as in the real missing-BP files."""
    directory, _, xp = store
    t = _as_table(MockGaiaArchive(directory, xp_format=fmt).load_xp_continuous(xp["source_id"][:3])
                  .popitem()[1][0])
    if fmt == "csv":
        assert np.ma.getmaskarray(t["bp_coefficients"])[0] and not np.ma.getmaskarray(t["bp_coefficients"])[1]
    else:
        assert len(t["bp_coefficients"][0]) == 0 and len(t["bp_coefficients"][1]) == 55
        assert len(t["bp_coefficient_correlations"][1]) == 1485
    assert np.ma.getmaskarray(t["bp_n_parameters"])[0] and np.ma.getmaskarray(t["rp_n_parameters"])[1]


def test_mock_absent_stars_and_gaia_source(store, realdata_dir):
    directory, gs, xp = store
    archive = MockGaiaArchive(directory)  # format from manifest.json
    assert archive.xp_format == "fits"
    parsed = parse_xp_tables(archive.load_xp_continuous(gs["source_id"]))
    assert set(parsed["source_id"]) == set(xp["source_id"]) < set(gs["source_id"])
    t = archive.query_gaia_source(gs["source_id"][::2])
    real = Table.read(realdata_dir / "gaia_source" / "astroquery" / "1710099405832VAL-result.vot")
    assert "SOURCE_ID" in t.colnames  # upper case, as the real VOTable
    for c in GAIA_SOURCE_COLUMNS:
        real_c = "SOURCE_ID" if c == "source_id" else c
        assert t[real_c].dtype == real[real_c].dtype, c
    p = parse_gaia_source(t)
    np.testing.assert_array_equal(p["parallax"], gs["parallax"][::2])
    np.testing.assert_array_equal(p["astrometric_params_solved"], gs["astrometric_params_solved"][::2])


def test_mock_failure_knobs_and_limits(store):
    directory, gs, _ = store
    archive = MockGaiaArchive(directory, fail_first=2, fail_on_call={3: PermanentArchiveError("boom")})
    for _ in range(2):
        with pytest.raises(TransientArchiveError):
            archive.load_xp_continuous(gs["source_id"][:3])
    archive.load_xp_continuous(gs["source_id"][:3])
    with pytest.raises(PermanentArchiveError):
        archive.query_gaia_source(gs["source_id"][:3])
    assert len(archive.calls) == 4
    with pytest.raises(PermanentArchiveError, match="5000"):
        archive.load_xp_continuous(np.arange(5001))
    with pytest.raises(StarfmInputError, match="manifest"):
        MockGaiaArchive(directory / "nowhere")


# ----------------------------------------------------------------------------- real client
class FakeJob:
    def __init__(self, table):
        self.table = table

    def get_results(self):
        return self.table


class FakeGaia:
    """Stands in for astroquery.gaia.Gaia: answers from real files, or raises on demand."""

    def __init__(self, realdata_dir, fmt_zip="vot", fail=None):
        self.realdata_dir = realdata_dir
        self.fmt_zip = fmt_zip
        self.fail = list(fail or [])
        self.calls = []

    def _maybe_fail(self):
        if self.fail:
            raise self.fail.pop(0)

    def launch_job_async(self, query, upload_resource=None, upload_table_name=None, verbose=False):
        self.calls.append(("launch_job_async", query, upload_resource, upload_table_name))
        self._maybe_fail()
        vot = self.realdata_dir / "gaia_source" / "astroquery" / "1710099405832VAL-result.vot"
        return FakeJob(Table.read(vot))

    def load_data(self, **kwargs):
        self.calls.append(("load_data", kwargs))
        self._maybe_fail()
        path = (self.realdata_dir / "xp" / "astroquery" /
                f"gaia_dr3_source_id_5937083312263887616_dl_products_{self.fmt_zip}.zip")
        out = {}
        with zipfile.ZipFile(path) as z:  # parsed as astroquery's __get_data_files does
            for n in z.namelist():
                out[n] = read_datalink_product(n, z.read(n))
        return out


def test_astroquery_client_requests(realdata_dir):
    fake = FakeGaia(realdata_dir)
    archive = AstroqueryGaiaArchive(timeout=5, xp_format="fits", gaia=fake)
    xp = parse_xp_tables(archive.load_xp_continuous([5937083312263887616]))
    assert xp["source_id"].tolist() == [5937083312263887616]
    _, kwargs = fake.calls[-1]
    assert kwargs["retrieval_type"] == "XP_CONTINUOUS" and kwargs["data_structure"] == "RAW"
    assert kwargs["format"] == "fits" and kwargs["ids"] == [5937083312263887616]
    gs = parse_gaia_source(archive.query_gaia_source([4583627001381815936, 5348723816842275584]))
    assert gs["source_id"].tolist() == [4583627001381815936, 5348723816842275584]
    _, query, upload, name = fake.calls[-1]
    assert f"tap_upload.{name}" in query and "gaiadr3.gaia_source" in query
    assert upload["source_id"].tolist() == [4583627001381815936, 5348723816842275584]
    for c in GAIA_SOURCE_COLUMNS:
        assert f"g.{c}" in query


@pytest.mark.parametrize("exc,kind", [
    (requests.exceptions.Timeout("read timed out"), TransientArchiveError),
    (requests.exceptions.ConnectionError("reset"), TransientArchiveError),
    (ConnectionResetError(104, "Connection reset by peer"), TransientArchiveError),
    (TimeoutError("timed out"), TransientArchiveError),
    (requests.exceptions.HTTPError("Error 503:\nService Unavailable"), TransientArchiveError),
    (requests.exceptions.HTTPError("Bad Gateway"), TransientArchiveError),
    (requests.exceptions.HTTPError("Error 400: bad ADQL"), PermanentArchiveError),
    (requests.exceptions.HTTPError("Not Found"), PermanentArchiveError),
    (ValueError("Invalid mandatory argument"), PermanentArchiveError),
])
def test_error_classification(realdata_dir, exc, kind):
    assert isinstance(classify_archive_error(exc), kind)
    archive = AstroqueryGaiaArchive(gaia=FakeGaia(realdata_dir, fail=[exc]))
    with pytest.raises(kind):
        archive.load_xp_continuous([1])


def test_http_error_with_response_status():
    resp = requests.models.Response()
    resp.status_code = 502
    assert isinstance(classify_archive_error(requests.exceptions.HTTPError("x", response=resp)),
                      TransientArchiveError)
    resp.status_code = 403
    assert isinstance(classify_archive_error(requests.exceptions.HTTPError("x", response=resp)),
                      PermanentArchiveError)


def test_astroquery_client_rejects_ecsv():
    with pytest.raises(StarfmInputError, match="ecsv"):
        AstroqueryGaiaArchive(xp_format="ecsv")
