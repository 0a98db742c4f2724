"""``starfm predict`` / ``generate`` / ``inpaint`` and the Python API on real and synthetic inputs.

The real XP files (``../shared/realdata/xp``) have no labels, so on them we test reading, joining,
tokenising and one output row per source; science (generate -> predict, inpainting) uses the
small model trained on the synthetic survey (``tests/synthetic_dataset.py``).
"""
from __future__ import annotations

import re
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.table import Table

import starfm
from starfm import tokens
from starfm.__main__ import main
from starfm.assemble import assemble
from starfm.catalogue_io import iter_xp_chunks, read_columns
from starfm.errors import StarfmInputError
from starfm.tables import match_rows, read_attrs, read_table, write_table
from starfm.model import ModelConfig
from starfm.predict import FLAGS, PredictSettings, SideTable, synthetic_photometry, token_columns
from starfm.tokenise import CutSettings, g_flux, tokenise
from starfm.train import TrainConfig, train
from helpers import TINY, default_config, run_snakemake
from synthetic_dataset import trained_synthetic_model, write_synthetic_dataset
from synthetic_inputs import DEFAULT_CUTS, synthetic_tables, write_inputs

warnings.filterwarnings("ignore", module="astropy")

# every XP file of realdata/xp -> number of distinct stars (realdata README)
REAL_XP = {
    "astroquery/gaia_dr3_source_id_5937083312263887616_dl_products_csv.zip": 1,
    "astroquery/gaia_dr3_source_id_5937083312263887616_dl_products_ecsv.zip": 1,
    "astroquery/gaia_dr3_source_id_5937083312263887616_dl_products_fits.zip": 1,
    "astroquery/gaia_dr3_source_id_5937083312263887616_dl_products_vot.zip": 1,
    "gaiaxp_spectra_analysis/gaia_dr3_xp_c110_binary.npz": 2815,
    "gaiaxpcorrection/example_file_coeff.csv": 10,
    "gaiaxpy/cholesky_solution/18Sco-XP-spectra.csv": 1,
    **{f"gaiaxpy/xp_continuous/XP_CONTINUOUS_RAW{s}": 2
       for s in (".csv", ".ecsv", ".fits", ".xml", "_plain.xml")},
    **{f"gaiaxpy/xp_continuous/XP_CONTINUOUS_RAW_with_missing_BP{s}": 3
       for s in (".csv", ".ecsv", ".fits", ".xml", "_plain.xml")},
    "gaiaxpy/xp_continuous/XP_CONTINUOUS_RAW_colour_eq_dr3int6.csv": 3,
    **{f"gaiaxpy/xp_continuous/XP_CONTINUOUS_RAW_missing_BP{s}": 1
       for s in ("_dr3int6.csv", "_dr3int6.ecsv", "_dr3int6.fits", "_dr3int6.xml", "_plain_dr3int6.xml",
                 "_votable_dr3int6.xml", "_votable_plain_dr3int6.xml")},
    "xp_spectral_lines/xp_continuous_combined_chunk0.fits": 2000,
    "xp_spectral_lines/xp_continuous_combined_weiler2023_examples.vot": 4,
}
NOT_XP = {"gaiaxp_spectra_analysis/VOSA_labels_training.csv": "no source_id column",
          "xp_spectral_lines/test_xp_ids-result.fits": "no bp_coefficients column"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread):
    """Every test here runs on one torch thread (conftest.one_torch_thread)."""


@pytest.fixture(scope="module")
def tiny_model(tiny_trained_model):
    return tiny_trained_model / "model.pt"


def _cli(*args):
    """Run ``python -m starfm`` in this process; (exit code)."""
    return main([str(a) for a in args])


def test_every_real_xp_file_is_listed(realdata_dir):
    on_disk = {str(p.relative_to(realdata_dir / "xp")) for p in (realdata_dir / "xp").rglob("*")
               if p.is_file()}
    assert on_disk == set(REAL_XP) | set(NOT_XP)


@pytest.mark.parametrize("rel", sorted(REAL_XP))
def test_cli_on_every_real_xp_format(realdata_dir, tiny_model, tmp_path, rel):
    out = tmp_path / "pred.ecsv"
    assert _cli("predict", "--model", tiny_model, "--xp", realdata_dir / "xp" / rel, "--out", out,
                "--settings", '{"chunk_rows": 700, "progress": false}') == 0
    t = Table.read(out, format="ascii.ecsv")
    assert len(t) == REAL_XP[rel] == len(np.unique(t["source_id"]))
    for name in ("mass", "age", "teff", "logg", "m_h", "ebv", "distance"):
        assert name in t.colnames and f"{name}_err" in t.colnames
    predicted = np.isfinite(np.asarray(t["mass"], float))
    # a star gets a prediction exactly when it has input tokens; none has gaia_source here
    assert np.array_equal(predicted, (t["flag"] & 64) == 0)
    assert ((t["flag"] & 1) > 0).all()
    # 18 Sco: G 5.3 < 6 fails the cut; the *missing_BP_dr3int6 files: one star with RP only, so
    # no G can be synthesised without gaia_source (flag 8 + 64, NaN outputs)
    if "18Sco" in rel or "missing_BP" in rel and "dr3int6" in rel:
        assert not predicted.any() and ((t["flag"] & (8 | 64)) == 72).all()
    else:
        assert predicted.any()
        assert (np.asarray(t["mass_err"], float)[predicted] > 0).all()


def test_g_from_xp_equals_gaiaxpy_generate(realdata_dir):
    """The G fallback is GaiaXPy's Gaia DR3 Vega photometry (generate), here vectorised."""
    import contextlib
    import io

    import matplotlib
    import pandas as pd
    with matplotlib.rc_context():
        from gaiaxpy import PhotometricSystem, generate

    xp, _ = next(iter_xp_chunks(realdata_dir / "xp" / "gaiaxpy" / "xp_continuous" / "XP_CONTINUOUS_RAW.fits"))
    df = pd.DataFrame({"source_id": xp["source_id"]})
    for b in ("bp", "rp"):
        df[f"{b}_coefficients"] = list(xp[f"{b}_coefficients"])
        df[f"{b}_coefficient_errors"] = list(xp[f"{b}_coefficient_errors"].astype(float))
        df[f"{b}_coefficient_correlations"] = [np.zeros(1485)] * len(df)
        df[f"{b}_n_parameters"] = 55
        df[f"{b}_standard_deviation"] = xp[f"{b}_standard_deviation"].astype(float)
    with contextlib.redirect_stdout(io.StringIO()):
        ref = generate(df, photometric_system=PhotometricSystem.Gaia_DR3_Vega, save_file=False)
    mags = synthetic_photometry(xp["bp_coefficients"], xp["rp_coefficients"])
    for j, band in enumerate(("G", "BP", "RP")):
        np.testing.assert_allclose(mags[:, j], ref[f"GaiaDr3Vega_mag_{band}"], rtol=0, atol=1e-9)


def test_g_fallback_flagged_and_gaia_g_preferred(realdata_dir, tiny_model, tmp_path):
    path = realdata_dir / "xp" / "xp_spectral_lines" / "xp_continuous_combined_chunk0.fits"
    xp, _ = next(iter_xp_chunks(path))
    synth = synthetic_photometry(xp["bp_coefficients"], xp["rp_coefficients"])[:, 0]
    out = tmp_path / "a.h5"
    assert _cli("predict", "--model", tiny_model, "--xp", path, "--out", out) == 0
    a = read_table(out)
    np.testing.assert_allclose(a["phot_g_mean_mag"], synth[np.searchsorted(xp["source_id"], a["source_id"])])
    assert ((a["flag"] & 2) > 0).all()
    # a gaia_source table giving G for half the stars: those use it, unflagged
    half = xp["source_id"][::2]
    gs = tmp_path / "gs.h5"
    write_table(gs, {"source_id": half, "phot_g_mean_mag": np.full(len(half), 13.0)})
    out_b = tmp_path / "b.h5"
    assert _cli("predict", "--model", tiny_model, "--xp", path, "--gaia-source", gs, "--out", out_b) == 0
    b = read_table(out_b)
    given = np.isin(b["source_id"], half)
    assert (b["phot_g_mean_mag"][given] == 13.0).all() and ((b["flag"][given] & 3) == 0).all()
    assert ((b["flag"][~given] & 3) == 3).all()
    # the XP tokens scale with 1/F_G: a different G changes the predictions
    assert not np.allclose(a["teff"][given], b["teff"][given], equal_nan=True)


def test_predict_tokens_equal_assemble_tokens(tmp_path):
    """predict's tokens for a star are exactly those assemble trains on (same function)."""
    tables = synthetic_tables(n=40, seed=4)
    paths = write_inputs(tmp_path, tables)
    paths.pop("truth", None)
    assemble(**paths, cuts=DEFAULT_CUTS, test_fraction=0.2, split_seed=7, out=tmp_path / "d.h5")
    ds = read_table(tmp_path / "d.h5", ["source_id", "values"])
    gaia = {**tables["gaia_source"]}
    plx = tables["parallax"]
    order = np.argsort(plx["source_id"])
    rows = order[np.searchsorted(plx["source_id"][order], gaia["source_id"])]
    gaia["parallax_corrected"] = plx["parallax_corrected"][rows]
    write_table(tmp_path / "gs.h5", gaia)
    lab = tables["labels"]
    write_table(tmp_path / "tmass.h5", {"source_id": lab["source_id"],
                                        **{c: lab[c] for c in ("j", "j_err", "h", "h_err", "k", "k_err")}})
    from starfm.predict import GAIA_COLUMNS, PHOTOMETRY_ALIASES
    gs = SideTable(tmp_path / "gs.h5", "gaia_source", {c: (c,) for c in GAIA_COLUMNS})
    phot = SideTable(tmp_path / "tmass.h5", "2MASS", PHOTOMETRY_ALIASES)
    xp, extra = next(iter_xp_chunks(paths["xp"]))
    cols, _, flag = token_columns(xp, extra, gs, phot, PredictSettings())
    values, _ = tokenise(cols, CutSettings.parse(DEFAULT_CUTS), missing_quality="pass")
    mine = values[np.searchsorted(xp["source_id"], ds["source_id"])]
    shared = tokens.index(tokens.XP_BP + tokens.XP_RP + ["bp_rp", "j_h", "j_k", "pseudo_luminosity"])
    assert np.isfinite(ds["values"][:, shared]).sum() > 1000
    np.testing.assert_array_equal(mine[:, shared], ds["values"][:, shared])
    assert not (flag & (1 | 2 | 4)).any()


def test_zero_point_and_2mass_aliases_give_their_tokens(realdata_dir, tiny_model, tmp_path):
    """A gaia_source with the L21 columns (no parallax_corrected) and 2MASS as the archive names it."""
    from starfm.zero_point import extra_term, lindegren_zero_point
    path = realdata_dir / "xp" / "gaiaxpy" / "xp_continuous" / "XP_CONTINUOUS_RAW_with_missing_BP.fits"
    ids = next(iter_xp_chunks(path))[0]["source_id"]
    n = len(ids)
    gs = {"source_id": ids, "phot_g_mean_mag": np.array([12.0, 13.0, 14.0]), "bp_rp": np.full(n, 1.3),
          "phot_bp_rp_excess_factor": np.full(n, 1.2), "ruwe": np.full(n, 1.0),
          "parallax": np.array([0.5, 0.3, 0.2]), "parallax_error": np.full(n, 0.02),
          "nu_eff_used_in_astrometry": np.full(n, 1.5), "pseudocolour": np.full(n, np.nan),
          "ecl_lat": np.array([10.0, -30.0, 50.0]), "astrometric_params_solved": np.full(n, 31)}
    Table(gs).write(tmp_path / "gs.fits")
    Table({"SOURCE_ID": ids, "j_m": np.full(n, 10.0), "j_msigcom": np.full(n, 0.02),
           "h_m": np.full(n, 9.4), "h_msigcom": np.full(n, 0.02),
           "ks_m": np.full(n, 9.2), "ks_msigcom": np.full(n, 0.02)}).write(tmp_path / "tm.csv")
    out = tmp_path / "p.fits"
    assert _cli("predict", "--model", tiny_model, "--xp", path, "--gaia-source", tmp_path / "gs.fits",
                "--photometry", tmp_path / "tm.csv", "--out", out) == 0
    t = Table.read(out)
    t = t[np.argsort(t["source_id"])]
    g = {k: np.asarray(v)[np.argsort(ids)] for k, v in gs.items()}
    zp = lindegren_zero_point(g["phot_g_mean_mag"], g["nu_eff_used_in_astrometry"], g["pseudocolour"],
                              g["ecl_lat"], g["astrometric_params_solved"])[0] + extra_term(g["phot_g_mean_mag"], 0.005)
    np.testing.assert_allclose(np.asarray(t["parallax_corrected"]), g["parallax"] - zp, rtol=1e-12)
    assert np.isfinite(zp).all()
    assert ((t["flag"] & (1 | 2 | 4 | 16 | 32)) == 0).all()   # everything known and used
    np.testing.assert_allclose(np.asarray(t["j"]), 10.0)
    assert np.isfinite(np.asarray(t["distance"])).all()


@pytest.mark.parametrize("ext", [".fits", ".csv", ".ecsv", ".h5", ".hdf5", ".parquet"])
def test_output_formats_round_trip(realdata_dir, tiny_model, tmp_path, ext):
    path = realdata_dir / "xp" / "gaiaxpcorrection" / "example_file_coeff.csv"
    out = tmp_path / f"p{ext}"
    ref = tmp_path / "ref.h5"
    assert _cli("predict", "--model", tiny_model, "--xp", path, "--out", ref) == 0
    try:
        import pyarrow  # noqa: F401
        has_arrow = True
    except ImportError:
        has_arrow = False
    code = _cli("predict", "--model", tiny_model, "--xp", path, "--out", out)
    if ext == ".parquet" and not has_arrow:
        assert code == 1 and not out.exists()     # the clear "needs pyarrow" error (see bad input)
        return
    assert code == 0
    a = read_columns(ref)
    if ext in (".h5", ".hdf5"):
        b = read_columns(out)
    elif ext == ".parquet":
        import pyarrow.parquet as pq
        b = {k: np.asarray(v) for k, v in pq.read_table(out).to_pydict().items()}
    else:
        b = {c: np.ma.filled(np.ma.asarray(col), np.nan)
             for c, col in Table.read(out, format={".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}.get(ext)).items()}
    assert list(b) == list(a)
    for k in a:
        np.testing.assert_allclose(np.asarray(b[k], float), a[k].astype(float),
                                   rtol=1e-8 if ext in (".csv", ".ecsv") else 0, err_msg=k)


def test_chunked_equals_whole(realdata_dir, tiny_model, tmp_path):
    path = realdata_dir / "xp" / "xp_spectral_lines" / "xp_continuous_combined_chunk0.fits"
    for chunk in (2000, 333):
        assert _cli("predict", "--model", tiny_model, "--xp", path, "--out", tmp_path / f"c{chunk}.h5",
                    "--settings", f'{{"chunk_rows": {chunk}, "batch_size": 97}}') == 0
    a, b = read_columns(tmp_path / "c2000.h5"), read_columns(tmp_path / "c333.h5")
    order = np.argsort(b["source_id"])
    for k in a:
        np.testing.assert_allclose(b[k][order], a[k], rtol=1e-5, atol=1e-7, err_msg=k)


# ---------------------------------------------------------------------------- bad input
def _bad(capsys, *args):
    code = _cli(*args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "starfm: error:" in line]
    assert code == 1 and len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_bad_inputs_one_line_naming_file_and_problem(realdata_dir, tiny_model, tmp_path, capsys):
    out = tmp_path / "o.h5"
    for rel, problem in NOT_XP.items():
        line = _bad(capsys, "predict", "--model", tiny_model, "--xp", realdata_dir / "xp" / rel, "--out", out)
        assert rel.split("/")[-1] in line and problem in line
    # wrong array lengths
    np.savez(tmp_path / "short.npz", X=np.ones((3, 100)), source_id=np.arange(3))
    line = _bad(capsys, "predict", "--model", tiny_model, "--xp", tmp_path / "short.npz", "--out", out)
    assert "short.npz" in line and "(n, 110)" in line
    with h5py.File(tmp_path / "ragged.h5", "w") as f:
        f["source_id"] = np.arange(4)
        f["bp_coefficients"] = np.ones((3, 55))
    line = _bad(capsys, "predict", "--model", tiny_model, "--xp", tmp_path / "ragged.h5", "--out", out)
    assert "ragged.h5" in line and "bp_coefficients" in line
    # unknown token name, unknown setting
    xp = realdata_dir / "xp" / "gaiaxpcorrection" / "example_file_coeff.csv"
    line = _bad(capsys, "predict", "--model", tiny_model, "--xp", xp, "--out", out,
                "--settings", '{"inputs": ["bp0", "bp99"]}')
    assert "bp99" in line and "unknown token" in line
    line = _bad(capsys, "predict", "--model", tiny_model, "--xp", xp, "--out", out, "--settings", '{"chunk": 5}')
    assert "chunk" in line
    # model files that are not models
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "cut.pt").write_bytes(Path(tiny_model).read_bytes()[:2000])
    for name, problem in (("empty.pt", "empty"), ("cut.pt", "corrupt"), ("nothing.pt", "not found")):
        line = _bad(capsys, "predict", "--model", tmp_path / name, "--xp", xp, "--out", out)
        assert name in line and problem in line and "weights_only" not in line
    line = _bad(capsys, "predict", "--model", realdata_dir / "xp" / "gaiaxpy" / "xp_continuous" / "XP_CONTINUOUS_RAW.fits",
                "--xp", xp, "--out", out)
    assert "not a model file" in line
    # unknown formats, missing files, empty tables, gaia_source without source_id
    line = _bad(capsys, "predict", "--model", tiny_model, "--xp", xp, "--out", tmp_path / "o.xlsx")
    assert "o.xlsx" in line and "unknown output type" in line
    line = _bad(capsys, "predict", "--model", tiny_model, "--xp", tmp_path / "none.csv", "--out", out)
    assert "none.csv" in line and "not found" in line
    (tmp_path / "empty.csv").write_text("source_id,bp_coefficients,rp_coefficients\n")
    line = _bad(capsys, "predict", "--model", tiny_model, "--xp", tmp_path / "empty.csv", "--out", out)
    assert "empty.csv" in line and "empty" in line
    Table({"id": [1], "phot_g_mean_mag": [12.0]}).write(tmp_path / "gs.fits")
    line = _bad(capsys, "predict", "--model", tiny_model, "--xp", xp, "--gaia-source", tmp_path / "gs.fits", "--out", out)
    assert "gs.fits" in line and "source_id" in line
    assert not out.exists()   # nothing half-written


def test_parquet_without_pyarrow_says_so(tiny_model, realdata_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)          # import pyarrow -> ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    line = _bad(capsys, "predict", "--model", tiny_model, "--out", tmp_path / "o.parquet",
                "--xp", realdata_dir / "xp" / "gaiaxpcorrection" / "example_file_coeff.csv")
    assert "o.parquet" in line and "pip install pyarrow" in line


def test_console_command_and_subcommands_listed(tiny_model, realdata_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "starfm", "predict", "--model", str(tmp_path / "x.pt"),
                          "--xp", str(realdata_dir / "xp" / "gaiaxpcorrection" / "example_file_coeff.csv"),
                          "--out", str(tmp_path / "o.h5")], capture_output=True, text=True)
    assert out.returncode == 1 and "x.pt: model file not found" in out.stderr
    top = subprocess.run([sys.executable, "-m", "starfm"], capture_output=True, text=True).stdout
    assert all(s in top for s in ("predict", "generate", "inpaint"))


# ---------------------------------------------------------------------------- science
@pytest.fixture(scope="module")
def trained():
    t = trained_synthetic_model()
    table = read_table(t["dataset"], ["values", "is_test"])
    truth = read_table(t["dataset"], group="truth")
    test = table["is_test"]
    return starfm.load(t["model"]), table["values"][test], {k: v[test] for k, v in truth.items()}


@pytest.mark.slow  # trains the small synthetic model (~1-2 min on 2 cores; shared with test_inference)
def test_generate_then_predict_gives_the_parameters_back(trained, tmp_path):
    """Spectra generated for given (Teff, logg, [M/H], mass, age, E(B-V)) predict them back.

    The generated spectrum is the model's mean spectrum for those parameters; predicting from it
    must land within the model's own uncertainty. Thresholds, from the small model trained 8
    epochs on the synthetic survey (deterministic: one torch thread): measured median |z| 0.76
    (Teff), 0.79 (logg), 1.28 ([M/H]), 0.90 (mass), 1.04 (age) and |z| < 3 for 83-100 % of the
    stars (a calibrated Gaussian: median 0.67, 99.7 %; the generated mean spectra are inverted less
    well than observed ones, median |z| 0.5-0.75, since the 8-epoch model is not exactly
    self-consistent). We require median |z| < 1.5 and |z| < 3 for >= 75 %, and the same
    predictions scored against shuffled parameters must be clearly worse (median |z| at least
    1.5x larger; measured 2.0-6.6x), so the test fails if generate and predict do not agree.
    E(B-V) is not tested: on this survey the model recovers it no better than shuffled (1.28 vs
    1.26), i.e. the XP tokens barely constrain it at this training length.
    """
    model, values, _ = trained
    rng = np.random.default_rng(0)
    rows = rng.choice(np.flatnonzero(np.isfinite(values[:, tokens.index(["teff", "logg", "m_h", "mass", "ln_age", "ln_ebv"])]).all(1)),
                      120, replace=False)
    v = values[rows]
    k = tokens.TOKEN_INDEX
    params = {"teff": v[:, k["teff"]], "logg": v[:, k["logg"]], "m_h": v[:, k["m_h"]],
              "mass": v[:, k["mass"]], "age": np.exp(v[:, k["ln_age"]]), "ebv": np.exp(v[:, k["ln_ebv"]])}
    gen = model.generate(g_mag=12.0, **params)
    assert gen["flux"].shape == (120, 343) and gen["wavelength"][0] == 336 and gen["wavelength"][-1] == 1020
    assert (gen["flux_error"] > 0).all()
    columns = {c: gen[c] for c in gen if c not in ("flux", "flux_error", "wavelength")}
    write_table(tmp_path / "gen.h5", columns)
    assert _cli("predict", "--model", model.path, "--xp", tmp_path / "gen.h5", "--out", tmp_path / "back.h5") == 0
    back = read_table(tmp_path / "back.h5")
    assert np.array_equal(back["source_id"], np.arange(120))
    assert ((back["flag"] & 2) == 0).all()                  # G from the generated file, not synthesised
    shuffled = rng.permutation(120)
    for name in ("teff", "logg", "m_h", "mass", "age"):
        z = np.abs(back[name] - params[name]) / back[f"{name}_err"]
        z_wrong = np.abs(back[name] - params[name][shuffled]) / back[f"{name}_err"]
        assert np.median(z) < 1.5 and np.mean(z < 3) >= 0.75, (name, np.median(z), np.mean(z < 3))
        assert np.median(z_wrong) > 1.5 * np.median(z), (name, np.median(z_wrong), np.median(z))


@pytest.mark.slow  # trains the small synthetic model (~1-2 min on 2 cores; shared with test_inference)
def test_inpainting_rp_from_bp_and_bp_from_rp(trained, tmp_path):
    """Inpainted coefficients beat the train median by far (and the API equals the CLI)."""
    model, values, _ = trained
    rows = np.flatnonzero(np.isfinite(values[:, tokens.index(["bp0", "rp0"])]).all(1))[:150]
    v = values[rows]
    G = np.full(len(rows), 12.0)
    cols = {"source_id": np.arange(len(rows)), "phot_g_mean_mag": G}
    for band, names in (("bp", tokens.XP_BP), ("rp", tokens.XP_RP)):
        coef = v[:, tokens.index(names)].astype(float) * g_flux(G)[:, None]
        cols[f"{band}_coefficients"] = coef
        cols[f"{band}_n_relevant_bases"] = np.isfinite(coef).sum(1).astype(np.int16)
    write_table(tmp_path / "xp.h5", cols)
    median = model.fm.token_median
    for source, target, names in (("bp", "rp", tokens.XP_RP), ("rp", "bp", tokens.XP_BP)):
        out = tmp_path / f"{target}.h5"
        assert _cli("inpaint", "--model", model.path, "--xp", tmp_path / "xp.h5", "--from", source, "--out", out) == 0
        got = read_columns(out)
        obs = v[:, tokens.index(names)].astype(float)
        pred = got[f"{target}_coefficients"] / g_flux(G)[:, None]
        np.testing.assert_array_equal(got[f"{source}_coefficients"], cols[f"{source}_coefficients"])
        np.testing.assert_array_equal(got[f"{target}_observed_coefficients"], cols[f"{target}_coefficients"])
        err_model = np.nanmean((pred - obs) ** 2, axis=0)
        err_median = np.nanmean((median[tokens.index(names)] - obs) ** 2, axis=0)
        # the first coefficients carry the spectrum: the model must explain most of their
        # variance. Measured on this 8-epoch synthetic model with the 121-token vocabulary:
        # RP -> BP 0.06, 0.68, 0.43, 0.14, 0.04 of the median's error (each < 0.5 with 120
        # tokens; bp1 moved with the vocabulary, with or without [alpha/M] data): each < 0.8
        # and their mean < 0.5 (measured 0.27). The shipped model's inpainting is checked
        # against 0.5 per band in test_science on the default run.
        ratio = err_model[:5] / err_median[:5]
        assert (ratio < 0.8).all() and ratio.mean() < 0.5, (source, ratio)
        api = model.inpaint(str(tmp_path / "xp.h5"), source_band=source)
        np.testing.assert_allclose(api[f"{target}_coefficients"], got[f"{target}_coefficients"])


@pytest.mark.slow  # trains the small synthetic model (~1-2 min on 2 cores; shared with test_inference)
def test_api_predict_matches_cli(trained, realdata_dir, tmp_path):
    model, _, _ = trained
    path = realdata_dir / "xp" / "gaiaxpcorrection" / "example_file_coeff.csv"
    assert _cli("predict", "--model", model.path, "--xp", path, "--out", tmp_path / "p.h5") == 0
    cli = read_columns(tmp_path / "p.h5")
    api = model.predict(str(path))
    assert list(api) == list(cli)
    for k in cli:
        np.testing.assert_allclose(api[k], cli[k], err_msg=k)
    with pytest.raises(StarfmInputError, match="bp99"):
        model.predict(str(path), inputs=["bp99"])
    assert set(FLAGS) == {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}


# ---------------------------------------------------------------------------- the workflow target
CATALOGUE_FILES = ["gaiaxpcorrection/example_file_coeff.csv",
                   "gaiaxpy/xp_continuous/XP_CONTINUOUS_RAW_with_missing_BP.fits",
                   "xp_spectral_lines/*.vot"]


def _predict_config(realdata_dir, model, catalogue="predict/catalogue.fits"):
    config = default_config()
    config["predict"] = {"xp_files": [str(realdata_dir / "xp" / f) for f in CATALOGUE_FILES],
                         "model": str(model), "catalogue": catalogue, "chunk_rows": 4}
    return config


def test_predict_is_not_in_the_default_target(realdata_dir, tiny_model, tmp_path):
    out = run_snakemake(tmp_path, _predict_config(realdata_dir, tiny_model), "-n")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "predict_file" not in out.stdout and "predict_catalogue" not in out.stdout
    dry = run_snakemake(tmp_path, _predict_config(realdata_dir, tiny_model), "-n", "predict_catalogue")
    assert dry.returncode == 0, dry.stderr[-3000:]
    jobs = dict(re.findall(r"^(predict_\w+)\s+(\d+)$", dry.stdout, flags=re.M))
    assert jobs == {"predict_file": "3", "predict_catalogue": "1"}, dry.stdout[-2000:]


@pytest.mark.slow  # three predict jobs and a merge through Snakemake (~30 s on 2 cores)
def test_catalogue_target_one_job_per_file_then_merged(realdata_dir, tiny_model, tmp_path):
    out = run_snakemake(tmp_path, _predict_config(realdata_dir, tiny_model), "predict_catalogue")
    assert out.returncode == 0, out.stderr[-4000:]
    results = tmp_path / "results"
    parts = sorted((results / "predict" / "parts").glob("*.h5"))
    assert [p.stem for p in parts] == ["XP_CONTINUOUS_RAW_with_missing_BP", "example_file_coeff",
                                       "xp_continuous_combined_weiler2023_examples"]
    assert len(list((results / "benchmarks" / "predict").glob("*.tsv"))) == 3   # one job each
    catalogue = Table.read(results / "predict" / "catalogue.fits")
    sizes = [len(read_columns(p)["source_id"]) for p in parts]
    assert sizes == [3, 10, 4] and len(catalogue) == sum(sizes)
    assert not (results / "model").exists() and not (results / "mock").exists()  # no default run
    # chunk_rows 4 < 10 rows: the streamed file equals the whole one predicted at once
    whole = tmp_path / "whole.h5"
    assert _cli("predict", "--model", tiny_model, "--xp",
                realdata_dir / "xp" / CATALOGUE_FILES[0], "--out", whole) == 0
    a, b = read_columns(whole), read_columns(parts[1])
    order = np.argsort(b["source_id"])
    np.testing.assert_allclose(b["mass"][order], a["mass"], rtol=1e-6)


def test_settings_defaults_equal_the_schema():
    import yaml
    from helpers import REPO_ROOT
    schema = yaml.safe_load((REPO_ROOT / "src" / "starfm" / "config.schema.yaml").read_text())
    section = schema["properties"]["predict"]["properties"]
    d = PredictSettings()
    for key in ("chunk_rows", "batch_size", "device"):
        assert section[key]["default"] == getattr(d, key), key
    assert section["inputs"]["default"] == [] and d.inputs is None   # [] = the default inputs
    assert default_config()["predict"]["chunk_rows"] == d.chunk_rows


@pytest.mark.parametrize("rel", ["gaiaxpy/xp_continuous/XP_CONTINUOUS_RAW_with_missing_BP.ecsv",
                                 "gaiaxpcorrection/example_file_coeff.csv"])
def test_gzipped_bulk_style_files(realdata_dir, tiny_model, tmp_path, rel):
    """Gaia DR3's bulk XpContinuousMeanSpectrum_*.csv.gz are ECSV inside a .csv.gz."""
    import gzip
    src = realdata_dir / "xp" / rel
    gz = tmp_path / "XpContinuousMeanSpectrum_000000-003111.csv.gz"
    gz.write_bytes(gzip.compress(src.read_bytes()))
    assert _cli("predict", "--model", tiny_model, "--xp", gz, "--out", tmp_path / "gz.h5") == 0
    assert _cli("predict", "--model", tiny_model, "--xp", src, "--out", tmp_path / "plain.h5") == 0
    a, b = read_columns(tmp_path / "gz.h5"), read_columns(tmp_path / "plain.h5")
    assert len(a["source_id"]) == REAL_XP[rel]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---- what the model file records, and predict under it ---------------------------------------
def test_model_file_records_cuts_tokens_and_coverage(tiny_model):
    """model.pt holds the training cuts (dataset.h5's attribute), per-token training counts and
    the training giants' 0.5-99.5 percentile coverage; StarFM exposes the tokens seen."""
    import json as _json

    import torch

    from starfm.dataset import read_dataset, training_records
    from starfm.inference import StarFM
    state = torch.load(tiny_model, weights_only=True)
    rec = _json.loads(state["training"])
    ds = read_dataset(tiny_model.parent / "dataset.h5")
    assert rec == _json.loads(_json.dumps(training_records(ds)))
    assert rec["cuts"] == _json.loads(ds.attrs["cuts"]) == DEFAULT_CUTS
    train = ~ds.is_test
    assert rec["token_counts"]["mass"] == int(np.isfinite(ds.column("mass")[train]).sum()) > 0
    lo, hi = rec["coverage"]["teff"]
    teff = ds.column("teff")[train]
    inside = (teff >= lo) & (teff <= hi)
    # 0.5-99.5 percentiles: 99 % of the finite train values lie inside (+-1 star of rounding)
    assert abs(inside.sum() / np.isfinite(teff).sum() - 0.99) < 0.01
    assert set(rec["coverage"]) == {"phot_g_mean_mag", "bp_rp", "j_k", "teff", "logg", "m_h",
                                    "alpha_m", "mass", "ln_age"}
    fm = StarFM.load(tiny_model)
    assert set(fm.tokens_seen) == {t for t, c in rec["token_counts"].items() if c > 0}


def _rewrite_model(src, dst, edit):
    """A copy of the model file with its ``training`` record edited (None: removed, as a file
    written before starfm stored it)."""
    import json as _json

    import torch
    state = torch.load(src, weights_only=True)
    record = edit(_json.loads(state.pop("training")))
    if record is not None:
        state["training"] = _json.dumps(record)
    torch.save(state, dst)
    return dst


def test_model_without_records_still_predicts(realdata_dir, tiny_model, tmp_path, caplog):
    """An older model file (no training record): default cuts, tokens seen from the
    standardisation, no out-of-distribution flag; each fallback logged."""
    from starfm.inference import StarFM
    old = _rewrite_model(tiny_model, tmp_path / "old.pt", lambda r: None)
    assert set(StarFM.load(old).tokens_seen) == set(StarFM.load(tiny_model).tokens_seen)
    xp = realdata_dir / "xp" / "xp_spectral_lines" / "xp_continuous_combined_chunk0.fits"
    new, prev = tmp_path / "new.h5", tmp_path / "prev.h5"
    settings = PredictSettings(progress=False)
    from starfm.predict import predict
    predict(tiny_model, xp, new, settings=settings)
    counts = predict(old, xp, prev, settings=settings)
    assert counts["flags"]["1024"] == 0 and "no training coverage" in caplog.text
    assert "no training cuts" in caplog.text
    a, b = read_table(new), read_table(prev)
    np.testing.assert_array_equal(a["teff"], b["teff"])        # same cuts, same tokens
    np.testing.assert_array_equal(a["flag"] & ~1024, b["flag"])


def test_unseen_inputs_dropped_and_unlearned_outputs_nan(realdata_dir, tiny_model, tmp_path):
    """A model whose training set had no mass and no pseudo-luminosity (the library's case):
    mass is written NaN with flag 256; a given parallax is never fed (flag 512) and the
    predictions equal those without it; the stored cuts are applied, narrowed by the settings."""
    def no_mass_no_plx(r):
        r["token_counts"].update(mass=0, pseudo_luminosity=0)
        return r
    model = _rewrite_model(tiny_model, tmp_path / "lib.pt", no_mass_no_plx)
    path = realdata_dir / "xp" / "gaiaxpy" / "xp_continuous" / "XP_CONTINUOUS_RAW.fits"
    ids = next(iter_xp_chunks(path))[0]["source_id"]
    n = len(ids)
    gs = {"source_id": ids, "phot_g_mean_mag": np.full(n, 12.0), "bp_rp": np.full(n, 1.3),
          "phot_bp_rp_excess_factor": np.full(n, 1.2), "ruwe": np.full(n, 1.0),
          "parallax": np.full(n, 0.5), "parallax_error": np.full(n, 0.02),
          "parallax_corrected": np.full(n, 0.52)}
    write_table(tmp_path / "gs.h5", gs)
    write_table(tmp_path / "gs_noplx.h5", {k: v for k, v in gs.items()
                                           if not k.startswith("parallax")})
    from starfm.predict import predict
    s = PredictSettings(progress=False)
    predict(model, path, tmp_path / "a.h5", tmp_path / "gs.h5", settings=s)
    predict(model, path, tmp_path / "b.h5", tmp_path / "gs_noplx.h5", settings=s)
    a, b = read_table(tmp_path / "a.h5"), read_table(tmp_path / "b.h5")
    assert np.isnan(a["mass"]).all() and np.isnan(a["mass_err"]).all() and (a["flag"] & 256).all()
    assert np.isnan(a["distance"]).all()                   # L never learned either
    assert (a["flag"] & 512).all() and not (b["flag"] & 512).any()
    np.testing.assert_array_equal(a["teff"], b["teff"])     # the parallax changed nothing
    assert np.isfinite(a["teff"]).all()
    # the training cuts narrowed by the settings (G 6-17.5 -> 6-11.5): G = 12 fails, no XP token
    c = tmp_path / "c.h5"
    predict(model, path, c, tmp_path / "gs.h5",
            settings=PredictSettings(progress=False, cuts={"g_mag": [3.0, 11.5]}))
    assert (read_table(c)["flag"] & 8).all()
    assert read_attrs(c)["cuts"]["g_mag"] == [6.0, 11.5]


# ---- out-of-distribution flag (1024) ---------------------------------------------------------
@dataclass
class HeldOut:
    """A model and held-out giants of its own training population, as ``starfm predict`` reads
    them: XP file, gaia_source and 2MASS tables, and the held-out source_ids."""
    model: Path
    xp: Path
    gaia_source: Path | None
    photometry: Path | None
    source_id: np.ndarray


def _synthetic_held_out(d: Path) -> HeldOut:
    """The synthetic survey's giants (tests/synthetic_inputs.py) assembled with the default cuts,
    a tiny model trained on the train split, the test split held out."""
    tables = synthetic_tables(n=1500, seed=11)
    paths = write_inputs(d, tables)
    paths.pop("truth", None)
    assemble(**paths, cuts=DEFAULT_CUTS, test_fraction=0.2, split_seed=7, out=d / "dataset.h5")
    train(d / "dataset.h5", d / "model.pt", d / "log.csv", None, TINY,
          TrainConfig(epochs=2, batch_size=128, lr=1e-3, n_requests=4), "cpu", progress=False)
    gaia = {**tables["gaia_source"]}
    plx = tables["parallax"]
    rows = match_rows(plx["source_id"], gaia["source_id"])
    gaia["parallax_corrected"] = plx["parallax_corrected"][rows]
    write_table(d / "gs.h5", gaia)
    lab = tables["labels"]
    write_table(d / "tmass.h5", {"source_id": lab["source_id"],
                                 **{c: lab[c] for c in ("j", "j_err", "h", "h_err", "k", "k_err")}})
    ds = read_table(d / "dataset.h5", ["source_id", "is_test"])
    return HeldOut(d / "model.pt", paths["xp"], d / "gs.h5", d / "tmass.h5",
                   ds["source_id"][ds["is_test"]])


# name -> builder of a model and its held-out giants: the synthetic survey's tiny model, and the
# library run's model on its held-out real APOGEE giants (slow: it runs the library workflow).
# Both out-of-distribution tests below run on each.
def _library_held_out(d: Path, library_run) -> HeldOut:
    """The library run's model (real APOGEE giants, tests/conftest.py library_run) and its
    held-out real giants, with the run's own gaia_source and 2MASS tables."""
    _, config = library_run
    results = Path(config["results"])
    lab = read_table(results / "catalogue" / "labels.h5")
    write_table(d / "tmass.h5", {"source_id": lab["source_id"],
                                 **{c: lab[c] for c in ("j", "j_err", "h", "h_err", "k", "k_err")}})
    ds = read_table(results / "dataset.h5", ["source_id", "is_test"])
    return HeldOut(results / "model" / "model.pt", results / "gaia" / "xp_continuous.h5",
                   results / "gaia" / "gaia_source.h5", d / "tmass.h5", ds["source_id"][ds["is_test"]])


HELD_OUT = {"synthetic": _synthetic_held_out, "library": _library_held_out}


@pytest.fixture(scope="module", params=["synthetic", pytest.param("library", marks=pytest.mark.slow)])
def held_out(request, tmp_path_factory) -> HeldOut:
    d = tmp_path_factory.mktemp(f"held_out_{request.param}")
    if request.param == "library":   # a real-star model needs the library workflow's run
        return _library_held_out(d, request.getfixturevalue("library_run"))
    return HELD_OUT[request.param](d)


def ood_fraction(model, xp, out, gaia_source=None, photometry=None, source_id=None) -> float:
    """Share of the predicted sources (those of ``source_id`` if given) with flag 1024."""
    from starfm.predict import predict
    predict(model, xp, out, gaia_source, photometry, settings=PredictSettings(progress=False))
    t = read_table(out)
    keep = np.isin(t["source_id"], source_id) if source_id is not None else slice(None)
    flag = t["flag"][keep]
    assert len(flag) > 0
    return float(((flag & 1024) > 0).mean())


def test_ood_flags_few_held_out_giants(held_out, tmp_path):
    frac = ood_fraction(held_out.model, held_out.xp, tmp_path / "p.h5", held_out.gaia_source,
                        held_out.photometry, held_out.source_id)
    # measured: synthetic 3.6 % of 275 held-out giants (3.4-4.9 % over survey seeds 1, 2, 11);
    # the default run's shipped model on its 1,558 held-out mock giants 2.5 %; the library run's
    # model on its 2,285 held-out real APOGEE giants 3.8 %. 8 quantities each
    # with 1 % of the train split outside its box give <= 8 % if independent; 15 % leaves a
    # factor 3 over the highest measured
    assert frac < 0.15, frac


def test_ood_flags_most_of_a_random_sky_patch(held_out, realdata_dir, tmp_path):
    """chunk0: 2,000 sources of a random sky patch (mostly dwarfs and faint stars, no
    gaia_source: G synthesised from XP)."""
    xp = realdata_dir / "xp" / "xp_spectral_lines" / "xp_continuous_combined_chunk0.fits"
    frac = ood_fraction(held_out.model, xp, tmp_path / "p.h5")
    # measured: synthetic 88.0 % (87.1-88.0 % over survey seeds 1, 2, 11; G outside the giants'
    # range 1,364-1,405 stars, synthesised BP-RP 860-862; the tiny model's predictions stay
    # near the training median, so no label flags here); the default run's shipped mock model
    # 74.6 % (BP-RP 1,130, G 408, Teff 109, mass 67); the library run's real-giant model 81.8 %.
    # 60 % ("most", for any model of this table)
    # leaves 14 points under the lowest measured
    assert frac > 0.6, frac


def test_ood_flag_from_a_predicted_label(realdata_dir, tiny_model, tmp_path):
    """A prediction outside the recorded coverage sets flag 1024 even when every input is inside."""
    def narrow_teff(r):
        r["coverage"] = {"teff": [0.0, 1.0]}
        return r
    model = _rewrite_model(tiny_model, tmp_path / "narrow.pt", narrow_teff)
    path = realdata_dir / "xp" / "gaiaxpy" / "xp_continuous" / "XP_CONTINUOUS_RAW.fits"
    from starfm.predict import predict
    counts = predict(model, path, tmp_path / "p.h5", settings=PredictSettings(progress=False))
    t = read_table(tmp_path / "p.h5")
    assert np.isfinite(t["teff"]).all() and (t["flag"] & 1024).all()
    assert counts["outside"] == {"teff": len(t["teff"])}


def test_generate_refuses_a_parameter_the_model_never_saw(tiny_model):
    """generate gives each parameter to the model as an input token; one the model never saw in
    training (mass for the library model, [alpha/M] for one trained on a labels table without
    it) has an untrained embedding, so it is a one-line error, not a silent guess."""
    from starfm.generate import generate
    from starfm.inference import StarFM

    fm = StarFM.load(tiny_model)
    out = generate(fm, {"teff": [4700.0], "logg": [2.5], "mass": [1.2]})
    assert np.isfinite(out["bp_coefficients"][:, 0]).all()          # seen: fine
    fm.training = {**fm.training, "token_counts": {**fm.training["token_counts"], "mass": 0}}
    with pytest.raises(StarfmInputError, match=r"never saw \['mass'\]"):
        generate(fm, {"teff": [4700.0], "logg": [2.5], "mass": [1.2]})
    assert np.isfinite(generate(fm, {"teff": [4700.0], "logg": [2.5]})["flux"]).all()
