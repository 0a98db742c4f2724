"""Figures: the data each panel plots comes from the inputs; every declared PNG is written.

Pixels are not compared; the ``prepare_*`` functions are checked against the dataset and
predictions, and the PNGs for size and shape. The model is the evaluate tests' ``FakeModel``.
"""
from __future__ import annotations

import re

import matplotlib.image as mpimg
import numpy as np
import pytest

from starfm import tokens
from starfm.baseline import train_baseline
from starfm.dataset import read_dataset
from starfm.evaluate import evaluate, robust_scatter
from starfm.figures import (FIGURE_NAMES, cli, make_figures, prepare_inpainting,
                            prepare_mass_age_mh, prepare_self_consistency,
                            prepare_spectra_to_labels, prepare_training_set)
from starfm.io import StarfmInputError, read_table
from test_baseline import make_tiny_dataset
from test_evaluate import FakeModel


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("figures")
    make_tiny_dataset(d / "dataset.h5", n=500, test_fraction=0.3)
    train_baseline(d / "dataset.h5", d / "xgb.json", n_estimators=10, threads=1)
    evaluate(d / "dataset.h5", FakeModel(), d / "xgb.json", d / "metrics.json", d / "pred.h5")
    paths = make_figures(d / "dataset.h5", FakeModel(), d / "pred.h5", d / "figs")
    return d, paths


def test_every_declared_figure_is_written(run, repo_root):
    d, paths = run
    assert [p.name for p in paths] == [f"{n}.png" for n in FIGURE_NAMES]
    for p in paths:
        img = mpimg.imread(p)
        # a real multi-panel figure at 150 dpi is > 600 px wide and has many distinct colours
        # (an empty canvas has 1)
        assert img.shape[1] > 600 and img.shape[0] > 400, p.name
        assert len(np.unique(img.reshape(-1, img.shape[-1])[::7], axis=0)) > 50, p.name
    # the workflow declares exactly these figures and each has a caption
    smk = (repo_root / "workflow/rules/figures.smk").read_text()
    declared = re.search(r"FIGURE_NAMES = \[(.*?)\]", smk, re.S).group(1)
    assert re.findall(r'"(fig\w+)"', declared) == FIGURE_NAMES
    for name in FIGURE_NAMES:
        assert (repo_root / f"workflow/report/{name}.rst").read_text().strip()


def test_training_set_data(run):
    d, _ = run
    ds = read_dataset(d / "dataset.h5")
    p = prepare_training_set(ds)
    train = ~ds.is_test
    np.testing.assert_array_equal(p["teff"], ds.column("teff")[train])
    assert len(p["glon"]) == train.sum()
    # the tiny dataset blanks bp40-54 / rp40-54 for the first third of its stars
    first_third = train[: len(train) // 3].sum() / train.sum()
    assert p["bp_fraction"][:40] == pytest.approx(1.0)
    assert p["bp_fraction"][45] == pytest.approx(1 - first_third)
    assert p["rp_median_n_relevant"] == 55.0
    np.testing.assert_allclose(p["ebv"], read_table(d / "dataset.h5", ["ebv_median"],
                                                    group="meta")["ebv_median"][train])


def test_mass_age_data(run):
    d, _ = run
    ds = read_dataset(d / "dataset.h5")
    p = prepare_mass_age_mh(ds)
    ok = ~ds.is_test & np.isfinite(ds.column("mass"))
    assert len(p["mass"]) == ok.sum()
    np.testing.assert_allclose(p["age"], np.exp(ds.column("ln_age")[ok]), rtol=1e-6)


def test_spectra_to_labels_data(run):
    d, _ = run
    pred = read_table(d / "pred.h5")
    p = prepare_spectra_to_labels(pred)
    e = p[("xgboost", "mass")]
    ok = np.isfinite(pred["label_mass"])
    assert e["n"] == ok.sum()
    assert e["scatter"] == pytest.approx(robust_scatter(pred["xgboost_mass"] - pred["label_mass"]))
    assert len(p[("transformer", "age")]["sigma"]) == p[("transformer", "age")]["n"]


def test_inpainting_requests_one_band_from_the_other(run):
    d, _ = run
    ds = read_dataset(d / "dataset.h5")
    model = FakeModel()
    p = prepare_inpainting(ds, model, max_stars=100)
    (in1, out1), (in2, out2) = model.calls
    assert in1 == tokens.XP_BP and out1 == tokens.XP_RP
    assert in2 == tokens.XP_RP and out2 == tokens.XP_BP
    rmse = p["bp_to_rp"]["rmse"]
    assert np.all(np.diff(rmse) >= 0)            # 5th ... 99th percentile, increasing


def test_self_consistency_feeds_teff_back(run):
    d, _ = run
    ds = read_dataset(d / "dataset.h5")
    model = FakeModel()
    p = prepare_self_consistency(ds, model, n_grid=5)
    (in1, out1), (in2, out2) = model.calls
    assert in1 == ["logg", "m_h"] and out1 == ["teff", "mass", "ln_age"]
    assert in2 == ["logg", "m_h", "teff"] and out2 == ["mass", "ln_age"]
    assert len(p["teff"]) == 25
    assert p["logg"].min() >= np.nanmin(ds.column("logg"))


def test_bad_inputs(run, tmp_path):
    d, _ = run
    other = FakeModel()
    other.vocabulary = list(reversed(tokens.VOCABULARY))
    with pytest.raises(StarfmInputError, match="different vocabulary"):
        make_figures(d / "dataset.h5", other, d / "pred.h5", tmp_path)
    # predictions from another dataset
    make_tiny_dataset(tmp_path / "other.h5", n=100, seed=3)
    with pytest.raises(StarfmInputError, match="pred.h5.*not the test split"):
        make_figures(tmp_path / "other.h5", FakeModel(), d / "pred.h5", tmp_path)
    rc = cli(["--dataset", str(d / "dataset.h5"), "--model", str(tmp_path / "absent.pt"),
              "--predictions", str(d / "pred.h5"), "--out-dir", str(tmp_path / "f")])
    assert rc == 1
    assert not (tmp_path / "f").exists()
