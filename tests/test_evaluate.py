"""Evaluation: metrics definitions, the input settings, the predictions file, truth scoring and
bad input.

Most tests use ``FakeModel``, a test double with StarFM's ``predict`` signature whose errors are
known, so the expected scatter / bias / z-score spread are known in advance. It answers from the
context it is given: no prediction for a star none of whose inputs is present, a label given as
input comes back (identity), and sigma is 3x larger for a star whose context holds only
high-order coefficients (index >= 25), so the settings' bookkeeping can be checked exactly.
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from starfm import tokens
from starfm.baseline import load_baselines, train_baseline
from starfm.baseline import TARGET_TOKENS
from starfm.evaluate import cli, evaluate, residual_metrics, robust_scatter, zscore
from starfm.input_settings import SETTINGS, XGBOOST_SETTINGS
from starfm.errors import StarfmInputError
from starfm.tables import read_table
from test_baseline import make_tiny_dataset

OUT_TOKENS = ["mass", "ln_age", "teff", "logg", "m_h", "alpha_m"]
# per output token: (extra noise std added, offset); predicted sigma is chosen so that
# sqrt(sigma_pred^2 + label_err^2) equals the true residual std -> z-score std 1
NOISE = {"mass": (0.1, 0.0), "ln_age": (0.2, 0.0), "teff": (50.0, 30.0), "logg": (0.05, 0.0),
         "m_h": (0.03, 0.0), "alpha_m": (0.01, 0.0)}
HIGH_ORDER_ONLY_FACTOR = 3.0
INFORMATIVE = set(tokens.XP_BP[:25] + tokens.XP_RP[:25] + tokens.COLOURS
                  + ["pseudo_luminosity", "ln_ebv"])
# the truth of the tiny dataset, made to differ from its catalogue labels (checked below)
TRUTH_TEFF_OFFSET = -100.0     # truth = label - 100 K
TRUTH_LOGG_NOISE = 0.2         # truth = label + N(0, 0.2)


class FakeModel:
    """StarFM stand-in: prediction = stored label + Gaussian noise (+ offset), calibrated sigma."""
    vocabulary = list(tokens.VOCABULARY)
    context_max = 64

    def __init__(self, seed=0):
        self.rng = np.random.default_rng(seed)
        self.calls = []          # (inputs, outputs) of each predict call
        self.n_present = []      # per call: each star's number of present inputs

    def predict(self, values, errors=None, inputs=None, outputs=("mass",), batch_size=4096):
        in_idx = tokens.index(list(inputs))
        present = np.isfinite(values[:, in_idx])
        self.calls.append((list(inputs), list(outputs)))
        self.n_present.append(present.sum(1))
        idx = tokens.index(list(outputs))
        truth = np.nan_to_num(values[:, idx].astype(float), nan=1.0)
        label_err = errors[:, idx].astype(float)
        sd = np.array([NOISE.get(o, (0.01, 0.0))[0] for o in outputs])[None, :]
        off = np.array([NOISE.get(o, (0.01, 0.0))[1] for o in outputs])
        informative = np.array([t in INFORMATIVE for t in inputs])
        high_only = ~(present & informative).any(1)
        sd = np.where(high_only[:, None], HIGH_ORDER_ONLY_FACTOR * sd, sd)
        total = np.sqrt(sd ** 2 + label_err ** 2)
        mean = truth + off + self.rng.normal(0, 1, truth.shape) * total
        std = np.broadcast_to(sd, mean.shape).copy()
        for j, o in enumerate(outputs):             # identity: a label in the context comes back
            if o in inputs:
                given = present[:, list(inputs).index(o)]
                mean[given, j] = values[given, idx[j]]
                std[given, j] = 1e-3 * sd[given, j]
        none = ~present.any(1)
        mean[none], std[none] = np.nan, np.nan
        return mean, std


def _make_truth_differ(path):
    """Rewrite the tiny dataset's truth (= its labels) as label - 100 K and label + N(0, 0.2)."""
    rng = np.random.default_rng(42)
    with h5py.File(path, "r+") as f:
        f["truth"]["teff"][...] = f["truth"]["teff"][()] + TRUTH_TEFF_OFFSET
        logg = f["truth"]["logg"][()]
        f["truth"]["logg"][...] = logg + rng.normal(0, TRUTH_LOGG_NOISE, logg.shape)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("evaluate")
    make_tiny_dataset(d / "dataset.h5", n=1200, test_fraction=0.5)
    _make_truth_differ(d / "dataset.h5")
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


def _call(model, name):
    """The FakeModel call of setting ``name`` (evaluate runs the settings in SETTINGS order)."""
    i = list(SETTINGS).index(name)
    inputs, outputs = model.calls[i]
    return {"inputs": inputs, "outputs": outputs, "n_present": model.n_present[i]}


def test_every_setting_is_reported_with_its_inputs(setup):
    d, model, metrics = setup
    stored = json.loads((d / "metrics.json").read_text())
    assert list(stored["settings"]) == list(SETTINGS) == [
        "standard", "standard+pseudo_luminosity", "standard+pseudo_luminosity+ln_ebv",
        "first5", "random64", "high_order", "high_order+labels"]
    assert len(model.calls) == len(SETTINGS)
    for name, setting in SETTINGS.items():
        entry = stored["settings"][name]
        assert entry["inputs"] == list(setting.inputs), name
        assert ("xgboost" in entry) == setting.xgboost == entry["xgboost_trained"], name
        assert set(entry["transformer"]) == set(tokens.TARGETS), name
        for label in tokens.TARGETS:
            t = entry["transformer"][label]
            assert {"scatter", "bias", "n", "zscore_std", "zscore_robust_std",
                    "mean_sigma"} <= set(t), (name, label)
            assert t["n"] > 0, (name, label)
        assert set(entry["truth"]["transformer"]) == set(tokens.TARGETS), name
        assert _call(model, name)["outputs"] == OUT_TOKENS
    assert list(SETTINGS["first5"].inputs) == tokens.XP_BP[:5] + tokens.XP_RP[:5]
    assert _call(model, "first5")["inputs"] == tokens.XP_BP[:5] + tokens.XP_RP[:5]


def test_both_models_get_identical_inputs_in_every_xgboost_setting(setup):
    d, model, metrics = setup
    baselines = load_baselines(d / "xgb.json")
    assert XGBOOST_SETTINGS == ["standard", "standard+pseudo_luminosity",
                                "standard+pseudo_luminosity+ln_ebv"]
    for name in XGBOOST_SETTINGS:
        transformer = _call(model, name)["inputs"]
        assert transformer == baselines[name].inputs == metrics["settings"][name]["inputs"], name
        assert len(transformer) <= 64 and not set(transformer) & set(OUT_TOKENS), name
    standard = metrics["settings"]["standard"]["inputs"]
    assert standard == tokens.XP_BP[:30] + tokens.XP_RP[:30] + ["j_h", "j_k", "bp_rp"]
    assert metrics["transformer_inputs"] == metrics["xgboost_inputs"] == standard
    assert not {"pseudo_luminosity", "ln_ebv"} & set(standard)


def test_top_level_is_the_standard_setting(setup):
    d, _, _ = setup
    stored = json.loads((d / "metrics.json").read_text())
    standard = stored["settings"]["standard"]
    assert stored["headline_setting"] == "standard"
    for key in ("transformer", "xgboost", "truth"):
        assert stored[key] == standard[key], key
    # and it is not what another setting gives (the comparison would not mean anything)
    assert stored["transformer"] != stored["settings"]["high_order"]["transformer"]


def test_high_order_uncertainties_grow(setup):
    _, _, metrics = setup
    st = metrics["settings"]
    for label in tokens.TARGETS:
        high, std = st["high_order"]["transformer"][label], st["standard"]["transformer"][label]
        assert high["mean_sigma"] > std["mean_sigma"], label
        # every tiny-dataset star has bp25-39: the FakeModel's sigma is exactly 3x larger
        assert high["sigma_ratio_vs_standard"] == pytest.approx(HIGH_ORDER_ONLY_FACTOR), label
        assert st["first5"]["transformer"][label]["sigma_ratio_vs_standard"] == pytest.approx(1)
        assert high["zscore_std"] == pytest.approx(1.0, abs=0.15), label
    assert "sigma_ratio_vs_standard" not in st["standard"]["transformer"]["mass"]


def test_identity_labels_given_as_inputs_come_back(setup):
    d, model, metrics = setup
    inputs = _call(model, "high_order+labels")["inputs"]
    given = [t for t in OUT_TOKENS if t in inputs]          # the paper's labels ([alpha/M] not given)
    assert given == [t for t in OUT_TOKENS if t != "alpha_m"] and len(inputs) <= 64
    assert set(inputs) - set(given) <= set(SETTINGS["high_order"].inputs)
    assert inputs[:len(given)] != given                      # mixed in, not a prefix
    ident = metrics["settings"]["high_order+labels"]["transformer"]
    for label in (lb for lb in tokens.TARGETS if TARGET_TOKENS[lb] in inputs):
        assert ident[label]["scatter"] < 1e-3 * metrics["transformer"][label]["scatter"], label
        assert ident[label]["n"] == metrics["transformer"][label]["n"], label
    p = read_table(d / "pred.h5", group="settings/high_order+labels")
    ok = np.isfinite(p["label_teff"])
    np.testing.assert_allclose(p["transformer_teff"][ok], p["label_teff"][ok], rtol=1e-6)


def test_random64_draws_a_seeded_random_64_per_star(setup, tmp_path):
    d, model, metrics = setup
    call = _call(model, "random64")
    pool = list(SETTINGS["random64"].inputs)
    assert sorted(call["inputs"]) == sorted(pool) and call["inputs"] != pool  # random order
    ds = read_table(d / "dataset.h5", ["values", "is_test"])
    v = ds["values"][ds["is_test"]][:, tokens.index(pool)]
    np.testing.assert_array_equal(call["n_present"], np.minimum(64, np.isfinite(v).sum(1)))
    assert metrics["settings"]["random64"]["random_subset"] == 64
    # seeded: same seed, same draw; another seed, another
    m1, m2 = FakeModel(), FakeModel()
    for m, seed in ((m1, 11), (m2, 12)):
        evaluate(d / "dataset.h5", m, d / "xgb.json", tmp_path / "m.json", tmp_path / "p.h5",
                 seed=seed)
    assert _call(m1, "random64")["inputs"] == call["inputs"]
    assert _call(m2, "random64")["inputs"] != call["inputs"]


def test_predictions_file_has_one_group_per_setting(setup):
    d, _, _ = setup
    root = read_table(d / "pred.h5")
    with h5py.File(d / "pred.h5", "r") as f:
        assert sorted(f["settings"]) == sorted(SETTINGS)
    for name, setting in SETTINGS.items():
        g = read_table(d / "pred.h5", group=f"settings/{name}")
        expected = {"source_id"}
        for label in tokens.TARGETS:
            expected |= {f"transformer_{label}", f"transformer_{label}_sigma",
                         f"transformer_{label}_zscore", f"label_{label}", f"label_{label}_err",
                         f"truth_{label}"}
            if setting.xgboost:
                expected.add(f"xgboost_{label}")
        assert set(g) == expected, name
        np.testing.assert_array_equal(g["source_id"], root["source_id"])
    standard = read_table(d / "pred.h5", group="settings/standard")
    assert set(standard) == set(root)
    for col in root:
        np.testing.assert_array_equal(standard[col], root[col], err_msg=col)


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
    d, _, metrics = setup
    truth = metrics["truth"]
    for model in ("transformer", "xgboost"):
        assert set(truth[model]) == set(tokens.TARGETS)
        assert truth[model]["teff"]["n"] > 0
    # truth = label - 100 K: the bias against truth is 100 K larger, the scatter the same
    assert truth["transformer"]["teff"]["bias"] == pytest.approx(
        metrics["transformer"]["teff"]["bias"] - TRUTH_TEFF_OFFSET, abs=10.0)
    assert truth["xgboost"]["teff"]["bias"] == pytest.approx(
        metrics["xgboost"]["teff"]["bias"] - TRUTH_TEFF_OFFSET, abs=10.0)
    assert truth["transformer"]["teff"]["scatter"] == pytest.approx(
        metrics["transformer"]["teff"]["scatter"], rel=0.05)
    # truth = label + N(0, 0.2): residuals vs truth add that spread in quadrature to the
    # observed sqrt(0.05^2 + 0.05^2) (FakeModel noise + label error)
    expected = np.hypot(np.hypot(0.05, 0.05), TRUTH_LOGG_NOISE)
    assert truth["transformer"]["logg"]["scatter"] == pytest.approx(expected, rel=0.15)
    assert metrics["transformer"]["logg"]["scatter"] == pytest.approx(np.hypot(0.05, 0.05),
                                                                      rel=0.15)
    # and the predictions file carries the truth, not the labels
    p = read_table(d / "pred.h5")
    np.testing.assert_allclose(p["truth_teff"], p["label_teff"] + TRUTH_TEFF_OFFSET, rtol=1e-6)


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
    # a baseline without one of the XGBoost settings (or of an older version): rerun the stage
    train_baseline(d / "dataset.h5", tmp_path / "std_only.json", n_estimators=2, threads=1,
                   settings=["standard"])
    with pytest.raises(StarfmInputError, match="std_only.json.*no XGBoost for input setting "
                                               "'standard\\+pseudo_luminosity'"):
        evaluate(d / "dataset.h5", FakeModel(), tmp_path / "std_only.json", tmp_path / "m.json",
                 tmp_path / "p.h5")
    short = FakeModel()
    short.context_max = 32
    with pytest.raises(StarfmInputError, match="context holds 32 tokens"):
        evaluate(d / "dataset.h5", short, d / "xgb.json", tmp_path / "m.json", tmp_path / "p.h5")
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
    assert list(metrics["settings"]) == list(SETTINGS)
    for name in SETTINGS:
        g = read_table(tmp_path / "pred.h5", group=f"settings/{name}")
        assert np.isfinite(g["transformer_teff"]).any(), name
    log = (tmp_path / "log.txt").read_text()
    assert "vs truth" in log and "settings: scatter vs catalogue labels" in log
    assert all(name in log for name in SETTINGS)


def test_context_order_does_not_change_a_prediction():
    """The encoder has no positional encoding: random64's per-star random order and the labels
    "mixed into" high_order+labels are the same contexts in any order (up to float rounding)."""
    import torch
    from starfm.inference import StarFM
    from starfm.model import SIZES, StarModel

    torch.manual_seed(0)
    fm = StarFM(StarModel(SIZES["small"]), tokens.VOCABULARY, np.zeros(len(tokens.VOCABULARY)), np.ones(len(tokens.VOCABULARY)))
    values = np.random.default_rng(0).normal(0, 1, (50, len(tokens.VOCABULARY)))
    values[:25, 40:55] = np.nan
    inputs = list(SETTINGS["high_order+labels"].inputs)
    a, sa = fm.predict(values, inputs=inputs, outputs=OUT_TOKENS)
    b, sb = fm.predict(values, inputs=inputs[::-1], outputs=OUT_TOKENS)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sa, sb, rtol=1e-4, atol=1e-5)
    c, _ = fm.predict(values, inputs=inputs[:-5], outputs=OUT_TOKENS)   # a different context
    assert not np.allclose(a, c, rtol=1e-3)


def test_corrupt_model_file_names_the_file(setup, tmp_path):
    import starfm.inference  # noqa: F401  (a broken import must fail this test, not skip it)
    d, _, _ = setup
    (tmp_path / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(StarfmInputError, match="model.pt"):
        evaluate(d / "dataset.h5", tmp_path / "model.pt", d / "xgb.json", tmp_path / "m.json",
                 tmp_path / "p.h5")
