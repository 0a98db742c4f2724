"""Figures: the one registry, each figure's ``prepare_*`` numbers, and every declared file written.

Pixels are not compared. The ``prepare_*`` functions are checked against what they must give
for models whose answer is known: ``OracleModel`` returns each star's own stored values (so
every reconstruction and inpainting error is exactly zero), the evaluate tests' ``FakeModel``
(stored label + noise), and for the drawing of every figure a real, untrained ``StarFM``
(random weights: fast, and it exercises the real predict and cross-attention paths).
"""
from __future__ import annotations

import dataclasses
import json
import re

import h5py
import matplotlib.image as mpimg
import numpy as np
import pytest

from starfm import tokens
from starfm.baseline import train_baseline
from starfm.dataset import read_dataset
from starfm.evaluate import evaluate, robust_scatter
from starfm.extinction_curve import curve_agreement
from starfm.figures import FIGURE_NAMES, FIGURES, cli, figure_number, make_figures
from starfm.figures.common import FigureInputs
from starfm.figures.extinction import extinction_summary, prepare_extinction_curve
from starfm.figures.grids import prepare_age_metallicity, prepare_kiel_grid, prepare_self_consistency
from starfm.figures.inpainting import prepare_inpainting
from starfm.figures.reconstruction import (percentile_picks, prepare_fractional_residual,
                                           prepare_reconstructed_spectra, prepare_reconstruction)
from starfm.figures.rp0_xgboost import INPUT_SETS, Settings as Rp0Settings, prepare_rp0_vs_xgboost
from starfm.figures.spectra_to_labels import PANELS, prepare_spectra_to_labels, setting_tables
from starfm.figures.stage import figure_builder, figure_module, figure_settings, render_caption
from starfm.figures.training_set import prepare_mass_age_mh, prepare_training_set
from starfm.figures.unseen_colours import prepare_unseen_colours
from starfm.errors import StarfmInputError
from starfm.tables import read_table, write_table
from synthetic_dataset import write_synthetic_dataset
from test_evaluate import FakeModel

SETTING_NAMES = ["standard", "standard+pseudo_luminosity", "standard+pseudo_luminosity+ln_ebv",
                 "first5", "random64", "high_order", "high_order+labels"]
INJECTED = {"extinction_law": "dust_extinction.parameter_averages.F99(Rv=3.1)", "r_v": 3.1,
            "ebv_true_over_sfd": 0.884}


class OracleModel(FakeModel):
    """Returns every star's own stored value of each requested token (1 where absent; sigma 0.1)."""

    def predict(self, values, errors=None, inputs=None, outputs=("mass",), batch_size=4096):
        self.calls.append((list(inputs), list(outputs)))
        mean = np.asarray(values, float)[:, tokens.index(list(outputs))]
        return np.nan_to_num(mean, nan=1.0), np.full(mean.shape, 0.1)


def random_starfm(dataset):
    """A real StarFM (small size) with random weights and the dataset's standardisation."""
    import torch

    from starfm.inference import StarFM
    from starfm.tables import read_attrs
    from starfm.model import SIZES, StarModel
    torch.manual_seed(0)
    attrs = read_attrs(dataset)
    info = {"train_config": json.dumps({"never_request": ["bp_rp", "j_k"]})}
    return StarFM(StarModel(SIZES["small"]), tokens.VOCABULARY, attrs["token_median"],
                  attrs["token_mad_std"], info)


def add_setting_groups(pred_path, out_path, names, seed=0):
    """predictions.h5 + groups settings/<name> (the evaluate contract): the root columns with
    each setting's transformer predictions moved by a known offset (so tests can tell them apart)."""
    root = read_table(pred_path)
    rng = np.random.default_rng(seed)
    groups = {}
    for k, name in enumerate(names):
        g = {}
        for label in tokens.TARGETS:
            g[f"label_{label}"] = root[f"label_{label}"]
            g[f"label_{label}_err"] = root[f"label_{label}_err"]
            g[f"transformer_{label}"] = root[f"transformer_{label}"] + 0.01 * (k + 1) * rng.normal(
                1.0, 0.1, len(root["source_id"]))
            g[f"transformer_{label}_sigma"] = root[f"transformer_{label}_sigma"]
            g[f"transformer_{label}_zscore"] = root[f"transformer_{label}_zscore"]
            if name.startswith("standard"):
                g[f"xgboost_{label}"] = root[f"xgboost_{label}"]
        groups[f"settings/{name}"] = g
    with h5py.File(out_path, "w") as f:
        for c, v in root.items():
            f.create_dataset(c, data=v)
        for gname, cols in groups.items():
            grp = f.create_group(gname)
            for c, v in cols.items():
                grp.create_dataset(c, data=v)
    return out_path


@pytest.fixture(scope="module")
def data(tmp_path_factory, one_torch_thread):
    """A synthetic dataset with mock truth, an untrained StarFM, predictions with every group."""
    d = tmp_path_factory.mktemp("figures")
    write_synthetic_dataset(d / "dataset.h5", n_stars=700, seed=1, test_fraction=0.3)
    with h5py.File(d / "dataset.h5", "a") as f:          # mock-survey truth: the injected law
        f.attrs["truth_attrs"] = "json:" + json.dumps(INJECTED)
    train_baseline(d / "dataset.h5", d / "xgb.json", n_estimators=10, threads=1)
    model = random_starfm(d / "dataset.h5")
    evaluate(d / "dataset.h5", model, d / "xgb.json", d / "metrics.json", d / "pred_eval.h5")
    # an older predictions.h5 without setting groups: the root columns only
    with h5py.File(d / "pred_eval.h5", "r") as src, h5py.File(d / "pred_root.h5", "w") as dst:
        for key in src:
            if key != "settings":
                src.copy(key, dst)
        dst.attrs.update(src.attrs)
    add_setting_groups(d / "pred_root.h5", d / "pred.h5", SETTING_NAMES)
    return d, model


@pytest.fixture(scope="module")
def drawn(data):
    """Every figure drawn (PNG, PDF, numbers, rendered caption) from ``data``."""
    d, model = data
    settings = {"fig19_rp0_vs_xgboost": {"n_estimators": 20, "max_train_stars": 300},
                "fig14_mass_age_self_consistency": {"n_grid": 12},
                "fig13_kiel_grid": {"n_logg": 9, "n_m_h": 7},
                # two bins the 210 synthetic test stars populate (the defaults are real giants' bins)
                "fig07_generated_vs_observed": {"teff_centres": [4750, 4600], "logg_centres": [2.25, 1.8],
                                                "m_h_centres": [-0.15, 0.0], "teff_half_width": 300,
                                                "logg_half_width": 0.5, "m_h_half_width": 0.3}}
    caption_dir = __import__("pathlib").Path(__file__).resolve().parents[1] / "workflow" / "report"
    paths = make_figures(d / "dataset.h5", model, d / "pred.h5", d / "figs", settings=settings,
                         caption_dir=caption_dir)
    return d, model, paths


def test_the_registry_is_the_paper_list_and_the_workflow_reads_it(repo_root):
    # every data figure of the paper (Fig. 3 is the architecture sketch), in order, named figNN_;
    # a figure may have a variant for real stars under the same number (Fig. 7: the isochrone
    # version needs mass and age, the library run draws generated versus observed spectra)
    numbers = [figure_number(n) for n in FIGURE_NAMES]
    assert numbers == sorted(numbers) and sorted(set(numbers)) == [1, 2] + list(range(4, 20))
    assert [n for n in FIGURE_NAMES if numbers.count(figure_number(n)) > 1] == [
        "fig07_generated_spectra", "fig07_generated_vs_observed"]
    assert all(re.fullmatch(r"fig\d\d_[a-z0-9_]+", n) for n in FIGURE_NAMES)
    for name, entry in FIGURES.items():
        # one module with a prepare_* / plot_* pair and the build function, one caption
        module = figure_module(name)
        assert callable(figure_builder(name)), name
        assert dataclasses.is_dataclass(figure_settings(name)), name
        assert any(k.startswith("prepare_") for k in vars(module)), name
        assert any(k.startswith("plot_") for k in vars(module)), name
        assert set(entry["inputs"]) <= {"dataset", "model", "predictions"}, name
        assert (repo_root / f"workflow/report/{name}.rst").read_text().strip(), name
    # a figure's name is written once: in the registry (and its caption's and config's names),
    # nowhere else in the code or the workflow
    for path in [*(repo_root / "src/starfm").rglob("*.py"), *(repo_root / "workflow").rglob("*.smk"),
                 repo_root / "Snakefile"]:
        if path.name == "registry.py":
            continue
        text = path.read_text()
        named = [n for n in FIGURE_NAMES if n in text]
        assert not named, (path, named)
    # every caption file belongs to a registered figure
    captions = {p.stem for p in (repo_root / "workflow/report").glob("fig*.rst")}
    assert captions == set(FIGURE_NAMES)


def test_schema_defaults_are_the_figure_settings(repo_root):
    import dataclasses

    import yaml
    schema = yaml.safe_load((repo_root / "src/starfm/config.schema.yaml").read_text())
    section = schema["properties"]["figures"]["properties"]
    assert list(section) == FIGURE_NAMES
    for name in FIGURE_NAMES:
        cls = figure_settings(name)
        fields = {f.name: f.default for f in dataclasses.fields(cls)}
        props = section[name].get("properties", {})
        assert set(props) == set(fields), name
        for key, default in fields.items():
            expected = list(default) if isinstance(default, tuple) else default
            assert props[key]["default"] == expected, (name, key)


@pytest.mark.slow
def test_every_declared_figure_is_written(drawn):
    d, _, paths = drawn
    assert [p.name for p in paths] == [f"{n}.png" for n in FIGURE_NAMES]
    for p in paths:
        img = mpimg.imread(p)
        # a real multi-panel figure at 150 dpi is > 600 px wide and has many distinct colours
        assert img.shape[1] > 600 and img.shape[0] > 400, p.name
        assert len(np.unique(img.reshape(-1, img.shape[-1])[::7], axis=0)) > 50, p.name
        assert p.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-", p.name
        numbers = json.loads(p.with_suffix(".json").read_text())
        assert numbers["figure"] == p.stem and numbers["seconds"] >= 0
        caption = p.with_suffix(".rst").read_text()
        assert caption.strip() and "{{" not in caption and "{%" not in caption, p.name
    # with every setting group present, no panel of Figs. 4-5 says "not evaluated"
    assert json.loads((d / "figs/fig05_mass_age.json").read_text())["settings_missing"] == []


@pytest.mark.slow
def test_extinction_curve_json(drawn):
    d, model, _ = drawn
    out = json.loads((d / "figs/extinction_curve.json").read_text())
    assert out["law"] == "F99 R_V = 3.1"
    ds = read_dataset(d / "dataset.h5")
    p = prepare_extinction_curve(ds, model)
    expected = curve_agreement(p["median"] * p["ebv_true_over_sfd"],
                               p["injected"] * p["ebv_true_over_sfd"], p["wavelength"],
                               window=(400.0, 900.0))
    assert out["median_abs_rel_error"] == pytest.approx(expected)
    assert out["window_nm"] == [400.0, 900.0]
    # the 400-900 window is not the 400-950 one the figure's legend quotes
    lam = p["wavelength"]
    assert np.all((lam[(lam >= 400) & (lam <= 900)] >= 400))
    # without truth (real data) there is no injected law: null, not a number
    no_truth = dict(p, injected_law=None)
    no_truth.pop("agreement_400_900")
    assert extinction_summary(no_truth)["median_abs_rel_error"] is None


def test_training_set_data(data):
    d, _ = data
    ds = read_dataset(d / "dataset.h5")
    p = prepare_training_set(ds)
    train = ~ds.is_test
    np.testing.assert_array_equal(p["teff"], ds.column("teff")[train])
    v = ds.values[train]
    has_bp = np.isfinite(v[:, tokens.TOKEN_INDEX["bp0"]])
    rel = np.isfinite(v[has_bp][:, tokens.index(tokens.XP_BP)])
    np.testing.assert_allclose(p["bp_fraction"], rel.mean(axis=0))
    assert p["bp_median_n_relevant"] == np.median(rel.sum(axis=1))
    np.testing.assert_allclose(p["ebv"], read_table(d / "dataset.h5", ["ebv_median"],
                                                    group="meta")["ebv_median"][train])
    m = prepare_mass_age_mh(ds)
    ok = train & np.isfinite(ds.column("mass")) & np.isfinite(ds.column("m_h"))
    assert len(m["mass"]) == ok.sum()
    np.testing.assert_allclose(m["age"], np.exp(ds.column("ln_age")[ok]), rtol=1e-6)


def test_spectra_to_labels_reads_each_setting_group(data, tmp_path):
    d, _ = data
    inputs = FigureInputs(d / "dataset.h5", None, d / "pred.h5")
    tables = setting_tables(inputs)
    p = prepare_spectra_to_labels(tables, ["mass"])
    for panel, setting, model, _ in PANELS:
        g = read_table(d / "pred.h5", group=f"settings/{setting}")
        ok = np.isfinite(g["label_mass"]) & np.isfinite(g[f"{model}_mass"])
        assert p[(panel, "mass")]["scatter"] == pytest.approx(
            robust_scatter(g[f"{model}_mass"][ok] - g["label_mass"][ok])), panel
    # the settings differ (known offsets), so the panels must too
    assert p[("c", "mass")]["bias"] != pytest.approx(p[("d", "mass")]["bias"])
    # without the groups: (a)-(b) from the root columns, (c)-(f) "not evaluated"
    inputs = FigureInputs(d / "dataset.h5", None, d / "pred_root.h5")
    p = prepare_spectra_to_labels(setting_tables(inputs), ["mass", "age"])
    root = read_table(d / "pred_root.h5")
    ok = np.isfinite(root["label_age"])
    assert p[("a", "age")]["scatter"] == pytest.approx(
        robust_scatter(root["xgboost_age"][ok] - root["label_age"][ok]))
    assert all(p[(panel, "mass")] is None for panel in "cdef")


def test_reconstruction_of_an_oracle_is_exact_and_picks_are_percentiles(data):
    d, _ = data
    ds = read_dataset(d / "dataset.h5")
    r = prepare_reconstruction(ds, OracleModel())
    assert r["rmse"].size > 20
    np.testing.assert_allclose(r["rmse"], 0.0, atol=1e-12)
    frac = prepare_fractional_residual(r)
    np.testing.assert_allclose(np.nan_to_num(frac["median"]), 0.0, atol=1e-12)
    # a model that is wrong by 10 % in every coefficient is 10 % off in every spectrum
    class Scaled(OracleModel):
        def predict(self, values, errors=None, inputs=None, outputs=("mass",), batch_size=4096):
            mean, std = super().predict(values, errors, inputs, outputs, batch_size)
            return mean * 1.1, std
    r = prepare_reconstruction(ds, Scaled())
    assert np.nanmedian(prepare_fractional_residual(r)["median"]) == pytest.approx(0.1, rel=1e-6)
    # percentile picks: star k of a shuffled 0..100 ramp sits at rank k
    ramp = np.random.default_rng(0).permutation(101).astype(float)
    picked = ramp[percentile_picks(ramp)]
    np.testing.assert_array_equal(picked, [5, 25, 50, 75, 90, 99])
    ramp[3] = np.nan                                  # NaN stars are never picked
    assert np.isfinite(ramp[percentile_picks(ramp)]).all()
    p = prepare_reconstructed_spectra(r)
    np.testing.assert_allclose(p["rmse"], r["rmse"][percentile_picks(r["rmse"])])


def test_inpainting_requests_one_band_from_the_other_in_wavelength(data):
    d, _ = data
    ds = read_dataset(d / "dataset.h5")
    model = OracleModel()
    p = prepare_inpainting(ds, model, max_stars=100)
    (in1, out1), (in2, out2) = model.calls
    assert in1 == tokens.XP_RP and out1 == tokens.XP_BP
    assert in2 == tokens.XP_BP and out2 == tokens.XP_RP
    np.testing.assert_allclose(p["rp_to_bp"]["rmse"], 0.0, atol=1e-12)   # oracle: exact
    # a model that gets BP wrong (from RP) changes only the predicted (blue) side of 640 nm

    class WrongBlue(OracleModel):
        def predict(self, values, errors=None, inputs=None, outputs=("mass",), batch_size=4096):
            mean, std = super().predict(values, errors, inputs, outputs, batch_size)
            return (mean * 1.2 if outputs[0] == "bp0" else mean), std
    p = prepare_inpainting(ds, WrongBlue(), max_stars=100)
    assert np.nanmedian(p["rp_to_bp"]["rmse"]) > 0.05
    np.testing.assert_allclose(p["bp_to_rp"]["rmse"], 0.0, atol=1e-12)
    lam = p["wavelength"]
    red = lam > 700                        # far from the split, the BP contribution is zero
    np.testing.assert_allclose(p["rp_to_bp"]["predicted"][:, red], p["observed"][:, red],
                               rtol=1e-9, atol=1e-30)
    # picks: the stars at the 5th-99th percentile of the mean error, increasing by construction
    # of the ranks; check them against the ranks, which can fail if the wrong star is picked
    ok = np.sort(p["rmse"][np.isfinite(p["rmse"])])
    ranks = np.floor(np.array([5, 25, 50, 75, 90, 99]) / 100 * (len(ok) - 1)).astype(int)
    np.testing.assert_allclose(p["rmse"][p["pick"]], ok[ranks])


def test_grids_ask_the_model_the_right_questions(data):
    d, _ = data
    ds = read_dataset(d / "dataset.h5")
    model = FakeModel()
    p = prepare_self_consistency(ds, model, n_grid=5)
    (in1, out1), (in2, out2) = model.calls
    assert in1 == ["logg", "m_h"] and out1 == ["teff", "mass", "ln_age"]
    assert in2 == ["logg", "m_h", "teff"] and out2 == ["mass", "ln_age"]
    assert len(p["teff"]) == 25
    model = OracleModel()
    k = prepare_kiel_grid(ds, model)
    assert model.calls[0] == (["logg", "m_h", "ln_ebv"], ["teff", "pseudo_luminosity"])
    assert k["logg"].min() == 0.0 and k["logg"].max() == 4.0      # the paper's grid
    assert k["m_h"].min() == -2.5 and k["m_h"].max() == 0.5
    a = prepare_age_metallicity(ds, OracleModel())
    np.testing.assert_allclose(np.log(a["age_hi"] / a["age"]), 0.1)   # exp(mu + sigma), sigma 0.1
    near = np.abs(ds.column("logg") - 2.5) < 0.15
    assert len(a["obs_m_h"]) == (near & np.isfinite(ds.column("m_h"))
                                 & np.isfinite(ds.column("ln_age"))).sum()


def test_unseen_colours_and_rp0(data):
    d, _ = data
    ds = read_dataset(d / "dataset.h5")
    model = OracleModel()
    model.info = {"train_config": json.dumps({"never_request": ["bp_rp", "j_k"]})}
    p = prepare_unseen_colours(ds, model)
    assert model.calls[0] == (tokens.XP_BP[:32] + tokens.XP_RP[:32], ["bp_rp", "j_k"])
    assert p["bp_rp"]["scatter"] == 0.0 and p["never_request"] == ["bp_rp", "j_k"]
    model = OracleModel()
    r = prepare_rp0_vs_xgboost(ds, model, Rp0Settings(n_estimators=30, max_train_stars=400))
    assert [c[0] for c in model.calls] == list(INPUT_SETS.values())
    for e in r.values():
        assert e["transformer_scatter"] == 0.0
        # XGBoost trained inside the figure does better with the colours than without
    assert r["labels+JH+JK+BP-RP"]["xgboost_scatter"] < r["labels"]["xgboost_scatter"]


def test_caption_rendering():
    text = "a {{ n.x | f('.2f') }} b {{ n.y | pct }} c {{ n.missing.deep | f('.1f') }} {{ n.z | pct }}"
    assert render_caption(text, {"x": 1.234, "y": 0.25, "z": None}) == "a 1.23 b 25.0 % c n/a n/a"
    with pytest.raises(StarfmInputError, match="cannot render"):
        render_caption("{{ n.x | nosuchfilter }}", {"x": 1}, "t.rst")


def test_bad_inputs(data, tmp_path):
    d, _ = data
    other = FakeModel()
    other.vocabulary = list(reversed(tokens.VOCABULARY))
    with pytest.raises(StarfmInputError, match="different vocabulary"):
        make_figures(d / "dataset.h5", other, d / "pred.h5", tmp_path, names=["fig13_kiel_grid"])
    # predictions from another dataset
    write_synthetic_dataset(tmp_path / "other.h5", n_stars=100, seed=3)
    with pytest.raises(StarfmInputError, match="pred.h5.*not the test split"):
        make_figures(tmp_path / "other.h5", FakeModel(), d / "pred.h5", tmp_path,
                     names=["fig05_mass_age"])
    with pytest.raises(StarfmInputError, match="unknown key"):
        make_figures(d / "dataset.h5", FakeModel(), d / "pred.h5", tmp_path,
                     names=["fig12_bp_rp_inpainting"], settings={"fig12_bp_rp_inpainting": {"x": 1}})
    rc = cli(["--figure", "fig13_kiel_grid", "--dataset", str(d / "dataset.h5"),
              "--model", str(tmp_path / "absent.pt"), "--png", str(tmp_path / "f" / "a.png")])
    assert rc == 1
    assert not (tmp_path / "f" / "a.png").exists()
    rc = cli(["--figure", "fig13_kiel_grid", "--dataset", str(d / "dataset.h5"),
              "--png", str(tmp_path / "b.png")])
    assert rc == 1                                          # needs --model
    write_table(tmp_path / "x.h5", {"a": np.zeros(3)})
    with pytest.raises(StarfmInputError, match="source_id"):
        FigureInputs(None, None, tmp_path / "x.h5").predictions


def test_extinction_curve_json_of_a_perfect_model_is_near_zero(tmp_path):
    """With the mock survey's own noise-free physics as the model, the recovered law is the
    injected one: extinction_curve.json says so (median |dA/A| over 400-900 nm well below 1 %)."""
    from test_extinction_curve import MOCK_TRUTH_ATTRS, MockPhysicsModel

    from starfm.figures.extinction import build

    write_synthetic_dataset(tmp_path / "dataset.h5", n_stars=60, seed=2)
    with h5py.File(tmp_path / "dataset.h5", "a") as f:
        f.attrs["truth_attrs"] = "json:" + json.dumps(MOCK_TRUTH_ATTRS)
    inputs = FigureInputs(tmp_path / "dataset.h5", MockPhysicsModel())
    _, numbers = build(inputs, None, extra_outputs=[tmp_path / "extinction_curve.json"])
    out = json.loads((tmp_path / "extinction_curve.json").read_text())
    assert set(out) >= {"median_abs_rel_error", "law"}
    assert out["law"] == "F99 R_V = 3.1"
    assert 0 <= out["median_abs_rel_error"] < 0.005
    assert numbers["median_abs_rel_error"] == out["median_abs_rel_error"]
    # a model whose extinction is 20 % too strong is caught (the number can fail)

    class TooDusty(MockPhysicsModel):
        def predict(self, values, errors=None, inputs=None, outputs=("mass",), batch_size=4096):
            values = np.array(values, float)
            k = tokens.TOKEN_INDEX["ln_ebv"]
            values[:, k] = values[:, k] + np.log(1.2)
            return super().predict(values, errors, inputs, outputs, batch_size)
    build(FigureInputs(tmp_path / "dataset.h5", TooDusty()), None,
          extra_outputs=[tmp_path / "dusty.json"])
    dusty = json.loads((tmp_path / "dusty.json").read_text())["median_abs_rel_error"]
    assert 0.1 < dusty < 0.3


class ParametricModel(FakeModel):
    """Known answers for parameter grids: Teff = 4000 + 500 mass, logg = 2.5, XP tokens all 1e-3
    (bp0 and rp0 2e-2), pseudo-luminosity = 100 mass; cross-attention weights = E(B-V) x a fixed
    pattern (so the map at two E differs by exactly their difference times the pattern)."""

    def predict(self, values, errors=None, inputs=None, outputs=("mass",), batch_size=4096):
        self.calls.append((list(inputs), list(outputs)))
        values = np.asarray(values, float)
        mass = np.nan_to_num(values[:, tokens.TOKEN_INDEX["mass"]], nan=1.0)
        cols = []
        for o in outputs:
            cols.append({"teff": 4000 + 500 * mass, "logg": np.full(len(mass), 2.5),
                         "pseudo_luminosity": 100 * mass,
                         "bp0": np.full(len(mass), 2e-2), "rp0": np.full(len(mass), 2e-2)}
                        .get(o, np.full(len(mass), 1e-3)))
        mean = np.stack(cols, axis=1)
        return mean, np.full(mean.shape, 0.05)

    def cross_attention(self, values, inputs=None, outputs=("mass",)):
        ebv = np.exp(np.asarray(values, float)[:, tokens.TOKEN_INDEX["ln_ebv"]])
        pattern = np.arange(len(outputs) * len(inputs), dtype=float).reshape(len(outputs), -1)
        return ebv[:, None, None] * pattern[None], list(inputs)

    token_index = {}


def test_generated_spectra_follow_the_isochrone_and_the_luminosity():
    from starfm.figures.generated_spectra import Settings, build, prepare_generated_spectra
    model = ParametricModel()
    d = prepare_generated_spectra(model, Settings(n_steps=3))
    # the isochrone (Teff, logg) comes from mass, ln age, [M/H], E(B-V); then the spectra from all six
    assert model.calls[0] == (["mass", "ln_age", "m_h", "ln_ebv"], ["teff", "logg"])
    assert model.calls[1][0] == ["teff", "logg", "m_h", "mass", "ln_age", "ln_ebv"]
    np.testing.assert_allclose(d["mass"]["teff"], 4000 + 500 * np.array([1.05, 1.10, 1.15]))
    np.testing.assert_allclose(d["age"]["age"], [7.0, 7.5, 8.0])
    # flux at 10 pc: G = 5 log10(L / 100) so F_G, and every flux, scales as L^-2 = mass^-2 here
    _, numbers = build(FigureInputs(model=ParametricModel()), Settings(n_steps=3))
    assert numbers["mass"]["flux_ratio_last_first"] == pytest.approx((1.15 / 1.05) ** -2, rel=1e-9)
    assert numbers["age"]["flux_ratio_last_first"] == pytest.approx(1.0)
    # G-normalised spectra do not depend on the luminosity: identical for every [M/H] here
    np.testing.assert_allclose(d["m_h"]["norm_flux"][0], d["m_h"]["norm_flux"][-1])


def test_cross_attention_maps_and_their_difference():
    from starfm.figures.attention import INPUTS, OUTPUTS, Settings, prepare_cross_attention
    d = prepare_cross_attention(ParametricModel(), Settings(ebv_high=0.5))
    assert d["inputs"] == INPUTS and d["outputs"] == OUTPUTS
    assert d["ebv"][1] == 0.5
    pattern = np.arange(len(OUTPUTS) * len(INPUTS), dtype=float).reshape(len(OUTPUTS), -1)
    np.testing.assert_allclose(d["high"], 0.5 * pattern)
    np.testing.assert_allclose(d["diff"], (0.5 - d["ebv"][0]) * pattern)


def test_physical_validation_uses_no_parallax_for_distance(data):
    from starfm.figures.physical_validation import XP_CONTEXT, prepare_physical_validation
    d, _ = data
    ds = read_dataset(d / "dataset.h5")
    model = OracleModel()
    p = prepare_physical_validation(ds, model, read_table(d / "pred.h5"))
    (in1, out1), (in2, out2) = model.calls
    assert out1 == ["ln_ebv"] and "ln_ebv" not in in1 and in1[:58] == XP_CONTEXT
    assert out2 == ["pseudo_luminosity"] and "pseudo_luminosity" not in in2
    assert p["ebv_scatter"] == 0.0                      # the oracle returns the reference E(B-V)
    # oracle pseudo-luminosity = the stored token: distance = 10^(G/5) / L = 1 / parallax_token
    test = ds.is_test
    g = read_table(d / "dataset.h5", ["phot_g_mean_mag"], group="meta")["phot_g_mean_mag"][test]
    lum = ds.column("pseudo_luminosity")[test].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = 10 ** (g / 5) / lum
    ok = np.isfinite(lum)                     # (absent tokens: the oracle answers 1)
    assert ok.sum() > 50
    np.testing.assert_allclose(p["d_spec"][ok], expected[ok], rtol=1e-6)


# ---- Fig. 7 for real stars: generated versus observed spectra -----------------------------------
class LookupModel:
    """Knows the test stars: given a star's own ln E(B-V) (continuous, so unique) it returns that
    star's observed XP tokens, whatever the labels; ``constant`` instead returns one vector."""
    vocabulary = list(tokens.VOCABULARY)

    def __init__(self, values, constant=None, seen=tuple(tokens.VOCABULARY)):
        self.values, self.constant, self.tokens_seen = values, constant, list(seen)
        self.calls = []

    def predict(self, values, errors=None, inputs=None, outputs=("mass",), batch_size=4096):
        self.calls.append(list(inputs))
        out = tokens.index(list(outputs))
        if self.constant is not None:
            return np.broadcast_to(self.constant, (len(values), len(out))).copy(), None
        key = self.values[:, tokens.TOKEN_INDEX["ln_ebv"]]
        order = np.argsort(key)
        pos = np.clip(np.searchsorted(key[order], values[:, tokens.TOKEN_INDEX["ln_ebv"]]), 0, len(key) - 1)
        return self.values[order[pos]][:, out].astype(float), None


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    from starfm.figures.generated_spectra import VersusObservedSettings
    d = tmp_path_factory.mktemp("gen_obs")
    write_synthetic_dataset(d / "dataset.h5", n_stars=600, seed=3, test_fraction=0.5)
    ds = read_dataset(d / "dataset.h5")
    test = ds.values[ds.is_test].astype(float)
    lab = np.nanmedian(test[:, tokens.index(["teff", "logg", "m_h"])], axis=0)
    # two populated bins at the test stars' median labels, one empty bin far away
    s = VersusObservedSettings(teff_centres=(lab[0], lab[0] + 150, 9000.0),
                               logg_centres=(lab[1], lab[1] + 0.4, 0.5), m_h_centres=(lab[2], lab[2], 0.0),
                               teff_half_width=200.0, logg_half_width=0.4, m_h_half_width=0.3)
    return ds, s


def test_generated_vs_observed_pairs_each_star_with_its_own_prediction(small_dataset):
    from starfm.figures.generated_spectra import prepare_generated_vs_observed
    ds, s = small_dataset
    test = ds.values[ds.is_test].astype(float)
    model = LookupModel(test)
    d = prepare_generated_vs_observed(ds, model, s)
    # asked with the labels and E(B-V), then with E(B-V) only; never any XP or other token
    assert model.calls == [["teff", "logg", "m_h", "ln_ebv"], ["ln_ebv"]]
    assert d["inputs"] == ["teff", "logg", "m_h", "ln_ebv"]
    assert len(d["bins"]) == 2 and [b["teff"] for b in d["skipped"]] == [9000.0]
    for e in d["bins"]:
        assert e["n_stars"] >= s.min_stars and e["n_coefficients_scored"] > 10
        # each star's prediction is its own observed spectrum: every "generated" score is 0,
        # the label-blind median of all test stars is not
        assert e["paired_generated"] == 0 and e["paired_dust_only"] == 0
        assert e["median_generated"] == pytest.approx(0, abs=1e-12)
        assert e["paired_label_blind"] > 0.3            # measured 0.73 and 0.82 on these bins


def test_generated_vs_observed_draws_two_panels_per_bin(small_dataset):
    from starfm.figures.generated_spectra import plot_generated_vs_observed, prepare_generated_vs_observed
    ds, s = small_dataset
    d = prepare_generated_vs_observed(ds, LookupModel(ds.values[ds.is_test].astype(float)), s)
    fig = plot_generated_vs_observed(d, s)
    # per populated bin: spectra (observed band + 5 lines) over residuals (4 lines); no empty panel
    assert len(fig.axes) == 2 * len(d["bins"]) == 4
    assert all(len(ax.lines) >= 4 for ax in fig.axes)
    assert "[nm]" in fig.axes[1].get_xlabel() and "F_G" in fig.axes[0].get_ylabel()
    __import__("starfm.figures.common", fromlist=["plt"]).plt().close(fig)


def test_generated_vs_observed_label_blind_model_scores_as_the_reference(small_dataset):
    from starfm.figures.generated_spectra import XP_TOKENS, prepare_generated_vs_observed
    ds, s = small_dataset
    test = ds.values[ds.is_test].astype(float)
    has_xp = np.isfinite(test[:, tokens.TOKEN_INDEX["bp0"]]) & np.isfinite(test[:, tokens.TOKEN_INDEX["rp0"]])
    blind = np.nanmedian(test[has_xp][:, tokens.index(XP_TOKENS)], axis=0)
    # a model that never saw E(B-V) is asked with the labels only; a model answering the
    # label-blind median scores exactly as the label-blind reference
    model = LookupModel(test, constant=blind, seen=[t for t in tokens.VOCABULARY if t != "ln_ebv"])
    d = prepare_generated_vs_observed(ds, model, s)
    assert model.calls == [["teff", "logg", "m_h"]] and d["inputs"] == ["teff", "logg", "m_h"]
    for e in d["bins"]:
        assert "paired_dust_only" not in e
        assert e["paired_generated"] == pytest.approx(e["paired_label_blind"], rel=1e-12)
        assert e["median_generated"] == pytest.approx(e["median_label_blind"], rel=1e-12)


def test_generated_vs_observed_bad_settings_are_one_line(small_dataset):
    from starfm.figures.generated_spectra import VersusObservedSettings, prepare_generated_vs_observed
    ds, _ = small_dataset
    model = LookupModel(ds.values[ds.is_test])
    with pytest.raises(StarfmInputError, match="equal"):
        prepare_generated_vs_observed(ds, model, VersusObservedSettings(teff_centres=(4500.0,)))
    # no populated bin (a tiny survey): no error, the figure says so and lists the counts
    d = prepare_generated_vs_observed(ds, model, VersusObservedSettings(
        teff_centres=(9000.0,), logg_centres=(0.1,), m_h_centres=(0.0,)))
    assert d["bins"] == [] and d["skipped"] == [{"teff": 9000.0, "logg": 0.1, "m_h": 0.0, "n_stars": 0}]
    from starfm.figures.generated_spectra import plot_generated_vs_observed
    fig = plot_generated_vs_observed(d, VersusObservedSettings(min_stars=10))
    assert "No (Teff, logg, [M/H]) bin has 10 test stars" in fig.axes[0].texts[0].get_text()
