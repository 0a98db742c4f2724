"""Evaluation: metrics definitions, the predictions file, truth scoring and bad input.

Most tests use ``FakeModel``, a test double with StarFM's ``predict`` signature whose errors are
known, so the expected scatter / bias / z-score spread are known in advance.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from starfm import tokens
from starfm.baseline import train_baseline
from starfm.evaluate import (TRANSFORMER_INPUTS, cli, evaluate, residual_metrics, robust_scatter,
                             zscore)
from starfm.io import StarfmInputError, read_table
from test_baseline import make_tiny_dataset

OUT_TOKENS = ["mass", "ln_age", "teff", "logg", "m_h"]
# per output token: (extra noise std added, offset); predicted sigma is chosen so that
# sqrt(sigma_pred^2 + label_err^2) equals the true residual std -> z-score std 1
NOISE = {"mass": (0.1, 0.0), "ln_age": (0.2, 0.0), "teff": (50.0, 30.0), "logg": (0.05, 0.0),
         "m_h": (0.03, 0.0)}


class FakeModel:
    """StarFM stand-in: prediction = stored label + Gaussian noise (+ offset), calibrated sigma."""
    vocabulary = list(tokens.VOCABULARY)

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.calls = []

    def predict(self, values, errors=None, inputs=None, outputs=("mass",), batch_size=4096):
        self.calls.append((list(inputs), list(outputs)))
        idx = tokens.index(list(outputs))
        truth = np.nan_to_num(values[:, idx].astype(float), nan=1.0)
        label_err = errors[:, idx].astype(float)
        sd = np.array([NOISE.get(o, (0.01, 0.0))[0] for o in outputs])
        off = np.array([NOISE.get(o, (0.01, 0.0))[1] for o in outputs])
        total = np.sqrt(sd ** 2 + label_err ** 2)
        mean = truth + off + self.rng.normal(0, 1, truth.shape) * total
        return mean, np.broadcast_to(sd, mean.shape).copy()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaluate")
    make_tiny_dataset(d / "dataset.h5", n=1200, test_fraction=0.5)
    train_baseline(d / "dataset.h5", d / "xgb.json", n_estimators=30, seed=1, threads=1)
    model = FakeModel()
    metrics = evaluate(d / "dataset.h5", model, d / "xgb.json", d / "metrics.json",
                       d / "pred.h5")
    return d, model, metrics


def test_metric_definitions():
    r = np.array([1.0, 2.0, 3.0, 4.0, 100.0, np.nan])
    # MAD of [1,2,3,4,100] about median 3 is median(|-2,-1,0,1,97|) = 1
    assert robust_scatter(r) == pytest.approx(1.4826)
    m = residual_metrics(np.array([1.0, 2.0, np.nan]), np.array([0.0, 0.0, 0.0]))
    assert m == {"scatter": pytest.approx(1.4826 * 0.5), "bias": 1.5, "n": 2}
    z = zscore(np.array([3.0]), np.array([3.0]), np.array([0.0]), np.array([4.0]))
    assert z[0] == pytest.approx(3.0 / 5.0)


def test_metrics_match_the_known_errors(setup):
    d, model, metrics = setup
    stored = json.loads((d / "metrics.json").read_text())
    assert stored["transformer"]["mass"]["n"] == metrics["transformer"]["mass"]["n"]
    n_test = metrics["n_test"]
    assert 500 < n_test < 700
    tm = metrics["transformer"]
    # ~600 stars: the relative error of a 1.4826*MAD scatter is ~1.17/sqrt(2n) ~ 3.4 %, of a std
    # ~ 1/sqrt(2n) ~ 3 %; 15 % tolerances are > 4 sigma yet catch a wrong factor (sqrt 2, 1.48)
    mass_total = np.sqrt(0.1 ** 2 + 0.1 ** 2)      # noise + label error (0.1 in the dataset)
    assert tm["mass"]["scatter"] == pytest.approx(mass_total, rel=0.15)
    assert tm["teff"]["bias"] == pytest.approx(30.0, abs=15.0)   # the injected offset
    assert abs(tm["logg"]["bias"]) < 0.02
    for label in tokens.TARGETS:
        assert tm[label]["zscore_std"] == pytest.approx(1.0, abs=0.15), label
        assert tm[label]["zscore_robust_std"] == pytest.approx(1.0, abs=0.15), label
        assert tm[label]["unit"]
        assert metrics["xgboost"][label]["n"] == tm[label]["n"]
        assert "zscore_std" not in metrics["xgboost"][label]
    # mass is missing for ~5 % of stars: those are not scored
    assert tm["mass"]["n"] < tm["teff"]["n"] == n_test


def test_transformer_gets_63_paper_inputs_without_the_labels(setup):
    _, model, _ = setup
    inputs, outputs = model.calls[0]
    assert inputs == TRANSFORMER_INPUTS and len(inputs) == 63
    assert set(inputs) >= {"pseudo_luminosity", "ln_ebv", "bp_rp", "j_h", "j_k", "bp28", "rp28"}
    assert not set(inputs) & set(OUT_TOKENS)
    assert outputs == OUT_TOKENS


def test_predictions_file_and_age_in_gyr(setup):
    d, _, metrics = setup
    p = read_table(d / "pred.h5")
    ds = read_table(d / "dataset.h5", ["source_id", "values", "is_test"])
    np.testing.assert_array_equal(p["source_id"], ds["source_id"][ds["is_test"]])
    ln_age = ds["values"][ds["is_test"], tokens.TOKEN_INDEX["ln_age"]]
    np.testing.assert_allclose(p["label_age"], np.exp(ln_age), rtol=1e-5)
    # the reported age scatter is the robust scatter of Gyr residuals in the file
    assert metrics["transformer"]["age"]["scatter"] == pytest.approx(
        robust_scatter(p["transformer_age"] - p["label_age"]))
    assert metrics["xgboost"]["teff"]["scatter"] == pytest.approx(
        robust_scatter(p["xgboost_teff"] - p["label_teff"]))
    # delta-method sigma in Gyr
    np.testing.assert_allclose(p["transformer_age_sigma"], p["transformer_age"] * 0.2, rtol=1e-5)
    for label in tokens.TARGETS:
        for col in (f"transformer_{label}", f"xgboost_{label}", f"truth_{label}"):
            assert np.isfinite(p[col]).all(), col


def test_truth_section(setup):
    _, _, metrics = setup
    truth = metrics["truth"]
    for model in ("transformer", "xgboost"):
        assert set(truth[model]) == set(tokens.TARGETS)
        assert truth[model]["teff"]["n"] > 0
    # in the tiny dataset the observed labels are the truth: identical scores
    assert truth["transformer"]["teff"]["scatter"] == pytest.approx(
        metrics["transformer"]["teff"]["scatter"])


def test_no_truth_group_no_truth_section(tmp_path):
    make_tiny_dataset(tmp_path / "d.h5", n=200, truth=False)
    train_baseline(tmp_path / "d.h5", tmp_path / "x.json", n_estimators=5, threads=1)
    m = evaluate(tmp_path / "d.h5", FakeModel(), tmp_path / "x.json", tmp_path / "m.json",
                 tmp_path / "p.h5")
    assert "truth" not in m
    assert "truth_mass" not in read_table(tmp_path / "p.h5")


def test_bad_inputs(setup, tmp_path):
    d, _, _ = setup
    other = FakeModel()
    other.vocabulary = tokens.VOCABULARY[:-1] + ["something_else"]
    with pytest.raises(StarfmInputError, match="different vocabulary"):
        evaluate(d / "dataset.h5", other, d / "xgb.json", tmp_path / "m.json", tmp_path / "p.h5")
    make_tiny_dataset(tmp_path / "notest.h5", n=100, test_fraction=0.0)
    with pytest.raises(StarfmInputError, match="notest.h5.*test split is empty"):
        evaluate(tmp_path / "notest.h5", FakeModel(), d / "xgb.json", tmp_path / "m.json",
                 tmp_path / "p.h5")
    with pytest.raises(StarfmInputError, match="nope.json"):
        evaluate(d / "dataset.h5", FakeModel(), tmp_path / "nope.json", tmp_path / "m.json",
                 tmp_path / "p.h5")
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "p.h5").exists()


def test_cli_missing_model_file_exits_1(setup, tmp_path, capsys):
    d, _, _ = setup
    rc = cli(["--dataset", str(d / "dataset.h5"), "--model", str(tmp_path / "absent.pt"),
              "--baseline", str(d / "xgb.json"), "--out", str(tmp_path / "m.json"),
              "--predictions", str(tmp_path / "p.h5")])
    assert rc == 1
    assert "absent.pt" in capsys.readouterr().err


def test_end_to_end_with_a_tiny_trained_model(tmp_path):
    """train (2 epochs, small model) -> baseline -> ``python -m starfm evaluate`` command line."""
    pytest.importorskip("starfm.inference")      # arrives with the model engineer's work
    import torch
    from starfm.train import TrainConfig, train
    from synthetic_dataset import write_synthetic_dataset

    torch.set_num_threads(1)
    write_synthetic_dataset(tmp_path / "dataset.h5", n_stars=400, test_fraction=0.25)
    train(tmp_path / "dataset.h5", tmp_path / "model.pt", tmp_path / "loss.csv", size="small",
          config=TrainConfig(epochs=2, batch_size=128), device="cpu", progress=False)
    train_baseline(tmp_path / "dataset.h5", tmp_path / "xgb.json", n_estimators=10, threads=1)
    rc = cli(["--dataset", str(tmp_path / "dataset.h5"), "--model", str(tmp_path / "model.pt"),
              "--baseline", str(tmp_path / "xgb.json"), "--out", str(tmp_path / "metrics.json"),
              "--predictions", str(tmp_path / "pred.h5"), "--log", str(tmp_path / "log.txt")])
    assert rc == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for section in (metrics, metrics["truth"]):
        for label in tokens.TARGETS:
            t = section["transformer"][label]
            assert t["n"] > 0 and t["scatter"] > 0 and t["zscore_std"] > 0, label
            assert section["xgboost"][label]["scatter"] > 0
    p = read_table(tmp_path / "pred.h5")
    assert len(p["source_id"]) == metrics["n_test"] == 100
    assert np.isfinite(p["transformer_mass"]).all() and (p["transformer_mass_sigma"] > 0).all()
    assert "vs truth" in (tmp_path / "log.txt").read_text()


def test_corrupt_model_file_names_the_file(setup, tmp_path):
    pytest.importorskip("starfm.inference")
    d, _, _ = setup
    (tmp_path / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(StarfmInputError, match="model.pt"):
        evaluate(d / "dataset.h5", tmp_path / "model.pt", d / "xgb.json", tmp_path / "m.json",
                 tmp_path / "p.h5")
