"""XGBoost baseline: one model set per XGBoost input setting, learns, saves everything in one
file, reloads, rejects bad input."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from starfm import tokens
from starfm.baseline import TARGET_TOKENS, cli, load_baseline, load_baselines, train_baseline
from starfm.dataset import read_dataset
from starfm.input_settings import SETTINGS, XGBOOST_SETTINGS
from starfm.errors import StarfmInputError
from starfm.tables import write_table


def make_tiny_dataset(path, n=800, seed=0, test_fraction=0.25, truth=True):
    """A small learnable dataset.h5 (docs/data_products.md layout).

    Labels drawn from simple red-giant-like ranges; every XP coefficient and colour is a fixed
    random linear function of the standardised labels plus noise, so labels are recoverable.
    Returns the true labels for checks.
    """
    rng = np.random.default_rng(seed)
    mass = rng.uniform(0.8, 2.5, n)
    ln_age = np.log(np.clip(10.0 * mass ** -2.5 * rng.lognormal(0, 0.1, n), 0.3, 13.5))
    m_h = rng.uniform(-1.0, 0.4, n)
    logg = rng.uniform(1.5, 3.3, n)
    teff = 4200 + 300 * (logg - 2.4) - 200 * m_h + rng.normal(0, 30, n)
    ln_ebv = rng.normal(-2.0, 0.7, n)
    g = rng.uniform(9, 16, n)
    parallax = rng.uniform(0.1, 2.0, n)
    z = np.column_stack([(mass - 1.5), (ln_age - 1.2), m_h, (logg - 2.4), (teff - 4200) / 300,
                         ln_ebv + 2])
    values = np.full((n, len(tokens.VOCABULARY)), np.nan, np.float32)
    errors = np.zeros((n, len(tokens.VOCABULARY)), np.float32)
    w = rng.normal(0, 1, (z.shape[1], 113))
    xp_col = z @ w + rng.normal(0, 0.02, (n, 113))
    values[:, :113] = xp_col
    errors[:, :113] = 0.02
    values[:, tokens.TOKEN_INDEX["teff"]] = teff
    values[:, tokens.TOKEN_INDEX["logg"]] = logg
    values[:, tokens.TOKEN_INDEX["m_h"]] = m_h
    # [alpha/M] falls with [M/H] (own generator: the other columns keep their draws)
    alpha_m = 0.05 - 0.2 * m_h + np.random.default_rng(seed + 10**6).normal(0, 0.01, n)
    values[:, tokens.TOKEN_INDEX["alpha_m"]] = alpha_m
    values[:, tokens.TOKEN_INDEX["ln_ebv"]] = ln_ebv
    values[:, tokens.TOKEN_INDEX["pseudo_luminosity"]] = parallax * 10 ** (g / 5)
    values[:, tokens.TOKEN_INDEX["mass"]] = mass
    values[:, tokens.TOKEN_INDEX["ln_age"]] = ln_age
    for name, err in [("teff", 40.0), ("logg", 0.05), ("m_h", 0.02), ("alpha_m", 0.01), ("mass", 0.1),
                      ("ln_age", 0.2), ("ln_ebv", 0.1), ("pseudo_luminosity", 1.0)]:
        errors[:, tokens.TOKEN_INDEX[name]] = err
    # high-order coefficients irrelevant for a third of the stars, a few labels missing
    values[: n // 3, 40:55] = np.nan
    values[: n // 3, 95:110] = np.nan
    values[rng.random(n) < 0.05, tokens.TOKEN_INDEX["mass"]] = np.nan
    is_test = rng.random(n) < test_fraction
    train = values[~is_test] if (~is_test).any() else values
    med = np.nanmedian(train, axis=0)
    mad = 1.4826 * np.nanmedian(np.abs(train - med), axis=0)
    meta = {"phot_g_mean_mag": g, "parallax": parallax, "parallax_corrected": parallax + 0.02,
            "parallax_error": np.full(n, 0.03), "glon": rng.uniform(0, 360, n),
            "glat": rng.uniform(-30, 30, n), "ebv_median": np.exp(ln_ebv)}
    groups = {"meta": meta}
    if truth:
        groups["truth"] = {"mass": mass, "age_gyr": np.exp(ln_age), "m_h": m_h, "alpha_m": alpha_m,
                           "teff": teff,
                           "logg": logg, "ebv": np.exp(ln_ebv), "distance_kpc": 1 / parallax}
    write_table(path, {"source_id": np.arange(n, dtype=np.int64) + 10**15, "values": values,
                       "errors": errors, "is_test": is_test},
                attrs={"vocabulary": tokens.VOCABULARY, "token_median": med, "token_mad_std": mad,
                       "n_train": int((~is_test).sum()), "n_test": int(is_test.sum()),
                       "test_fraction": test_fraction, "split_seed": seed},
                groups=groups)
    return values, is_test


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("baseline")
    values, is_test = make_tiny_dataset(d / "dataset.h5")
    summary = train_baseline(d / "dataset.h5", d / "xgb.json", n_estimators=150, seed=1,
                             threads=1)
    return d, values, is_test, summary


def test_baseline_learns_and_reloads(tiny):
    d, values, is_test, summary = tiny
    model = load_baseline(d / "xgb.json")            # the standard setting
    assert model.inputs == list(SETTINGS["standard"].inputs)
    assert model.inputs == tokens.XP_BP[:30] + tokens.XP_RP[:30] + ["j_h", "j_k", "bp_rp"]
    pred = model.predict(values[is_test])
    for label, token in [("mass", "mass"), ("teff", "teff"), ("logg", "logg"), ("m_h", "m_h")]:
        y = values[is_test, tokens.TOKEN_INDEX[token]]
        ok = np.isfinite(y)
        resid = pred[label][ok] - y[ok]
        # the labels are linear in the 63 inputs up to 2 % noise: a learnt model must explain
        # most of the variance (a model predicting the mean would give ratio 1)
        assert np.std(resid) < 0.5 * np.std(y[ok]), label
    age = values[is_test, tokens.TOKEN_INDEX["ln_age"]]
    assert np.all(pred["age"] > 0)                        # reported in Gyr (exp of ln_age)
    assert np.corrcoef(np.log(pred["age"]), age)[0, 1] > 0.8
    assert set(summary) == set(XGBOOST_SETTINGS)
    for per_setting in summary.values():
        assert set(per_setting) == set(TARGET_TOKENS.values())
        # the 10 % hold-out exists and early stopping chose an iteration within n_estimators
        assert all(s["n_valid"] > 0 and 0 <= s["best_iteration"] < 150
                   for s in per_setting.values())


def test_one_model_set_per_xgboost_setting_on_exactly_its_inputs(tiny):
    d, values, is_test, _ = tiny
    assert XGBOOST_SETTINGS == ["standard", "standard+pseudo_luminosity",
                                "standard+pseudo_luminosity+ln_ebv"]
    models = load_baselines(d / "xgb.json")
    assert list(models) == XGBOOST_SETTINGS
    for name, model in models.items():
        # the transformer gets SETTINGS[name].inputs: the booster must have seen exactly those
        assert model.inputs == list(SETTINGS[name].inputs), name
        for booster in model.boosters.values():
            assert booster.feature_names == list(SETTINGS[name].inputs), name
    assert len(models["standard+pseudo_luminosity"].inputs) == 64
    plus2 = models["standard+pseudo_luminosity+ln_ebv"].inputs
    assert len(plus2) == 63 and {"bp29", "rp29"}.isdisjoint(plus2)
    assert {"pseudo_luminosity", "ln_ebv"} <= set(plus2)
    # the extra inputs are used: in the tiny dataset ln E(B-V) drives every coefficient, so the
    # setting that sees it must predict differently from the standard one
    pred = {name: m.predict(values[is_test], labels=["mass"])["mass"] for name, m in models.items()}
    assert not np.allclose(pred["standard"], pred["standard+pseudo_luminosity+ln_ebv"])
    gain = models["standard+pseudo_luminosity+ln_ebv"].boosters["mass"].get_score(
        importance_type="weight")
    assert "ln_ebv" in gain and "pseudo_luminosity" in gain
    with pytest.raises(StarfmInputError, match="xgb.json.*no setting 'first5'"):
        load_baseline(d / "xgb.json", "first5")


def test_only_xgboost_settings_can_be_trained(tmp_path):
    make_tiny_dataset(tmp_path / "d.h5", n=100)
    with pytest.raises(StarfmInputError, match="random64"):
        train_baseline(tmp_path / "d.h5", tmp_path / "o.json", n_estimators=2, threads=1,
                       settings=["random64"])
    train_baseline(tmp_path / "d.h5", tmp_path / "o.json", n_estimators=2, threads=1,
                   settings=["standard"])
    assert list(load_baselines(tmp_path / "o.json")) == ["standard"]


def test_baseline_trains_only_on_train_split(tmp_path):
    """Rewriting every test-split label must not change the saved model."""
    values, is_test = make_tiny_dataset(tmp_path / "a.h5", n=300)
    train_baseline(tmp_path / "a.h5", tmp_path / "a.json", n_estimators=20, seed=3, threads=1)
    with h5py.File(tmp_path / "a.h5", "r+") as f:
        v = f["values"][()]
        v[f["is_test"][()], tokens.TOKEN_INDEX["mass"]] = 99.0
        f["values"][...] = v
    train_baseline(tmp_path / "a.h5", tmp_path / "b.json", n_estimators=20, seed=3, threads=1)
    for name in XGBOOST_SETTINGS:
        a = json.loads((tmp_path / "a.json").read_text())["settings"][name]["targets"]["mass"]
        b = json.loads((tmp_path / "b.json").read_text())["settings"][name]["targets"]["mass"]
        assert a["booster"] == b["booster"], name


def test_baseline_is_seeded(tmp_path):
    make_tiny_dataset(tmp_path / "a.h5", n=300)
    for name in ("x.json", "y.json"):
        train_baseline(tmp_path / "a.h5", tmp_path / name, n_estimators=10, seed=4, threads=1)
    assert (tmp_path / "x.json").read_text() == (tmp_path / "y.json").read_text()


def test_cli_writes_one_file(tmp_path):
    make_tiny_dataset(tmp_path / "d.h5", n=200)
    rc = cli(["--dataset", str(tmp_path / "d.h5"), "--settings", '{"n_estimators": 5, "seed": 5}',
              "--threads", "1", "--out", str(tmp_path / "out" / "xgb.json"),
              "--log", str(tmp_path / "log.txt")])
    assert rc == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["xgb.json"]   # atomic, no temp left
    assert "wrote" in (tmp_path / "log.txt").read_text()


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(StarfmInputError, match="missing.h5"):
        train_baseline(tmp_path / "missing.h5", tmp_path / "o.json")
    # a dataset without is_test
    write_table(tmp_path / "nocol.h5", {"source_id": np.arange(3), "values": np.zeros((3, len(tokens.VOCABULARY))),
                                        "errors": np.zeros((3, len(tokens.VOCABULARY)))},
                attrs={"vocabulary": tokens.VOCABULARY})
    with pytest.raises(StarfmInputError, match="nocol.h5.*is_test"):
        train_baseline(tmp_path / "nocol.h5", tmp_path / "o.json")
    # a different vocabulary
    make_tiny_dataset(tmp_path / "vocab.h5", n=50)
    with h5py.File(tmp_path / "vocab.h5", "r+") as f:
        f.attrs["vocabulary"] = "json:" + json.dumps(tokens.VOCABULARY[::-1])
    with pytest.raises(StarfmInputError, match="vocab.h5.*vocabulary"):
        read_dataset(tmp_path / "vocab.h5")
    # an empty train split
    make_tiny_dataset(tmp_path / "alltest.h5", n=50, test_fraction=1.01)
    with pytest.raises(StarfmInputError, match="alltest.h5.*train split is empty"):
        train_baseline(tmp_path / "alltest.h5", tmp_path / "o.json")
    # corrupt / foreign baseline files
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(StarfmInputError, match="bad.json"):
        load_baseline(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "something else"}')
    with pytest.raises(StarfmInputError, match="other.json"):
        load_baseline(tmp_path / "other.json")
    # the single-setting file of the previous version: rerun the stage
    (tmp_path / "v1.json").write_text('{"format": "starfm-xgboost-baseline-v1", "inputs": []}')
    with pytest.raises(StarfmInputError, match="v1.json.*rerun the baseline stage"):
        load_baselines(tmp_path / "v1.json")
    assert not (tmp_path / "o.json").exists()
