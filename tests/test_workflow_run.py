"""The workflow end to end, with Snakemake as users run it, on the tiny test configuration
(``.test/config.yaml``, one shared run: ``conftest.tiny_run``): every product is written, a
second run has nothing to do, changing a config section reruns exactly the rules that read it
(a cut: assembly and what follows, never the archive, zero-point or dust), the HTML report
builds, and real mode dry-runs the same stages."""
from __future__ import annotations

import copy

import pytest

from helpers import default_config, run_snakemake, scheduled_jobs
from starfm.figures.registry import FIGURE_NAMES, FIGURES

pytestmark = pytest.mark.slow

EXPENSIVE = {"mock_survey", "gaia_source", "gaia_xp", "zero_point", "dust", "labels",
             "download_apogee"}
DOWNSTREAM_OF_ASSEMBLY = {"assemble", "train", "baseline", "evaluate", "figures", "all",
                          "report_summary"} | {f"figure_{n}" for n in FIGURE_NAMES}


def test_run_writes_every_product(tiny_run):
    workdir, _ = tiny_run
    for rel in ["results/dataset.h5", "results/metrics.json", "results/model/model.pt",
                "results/model/training_log.csv", "results/baseline/xgboost.json",
                "results/dust/extinction.h5", "results/gaia/xp_continuous.h5",
                "results/gaia/gaia_source.h5", "results/gaia/parallax.h5",
                "results/catalogue/labels.h5", "results/evaluation/predictions.h5"]:
        assert (workdir / rel).stat().st_size > 0, rel
    figures = workdir / "results" / "figures"
    assert sorted(p.name for p in figures.glob("*.png")) == sorted(f"{n}.png" for n in FIGURE_NAMES)
    for name in FIGURE_NAMES:
        assert (figures / f"{name}.pdf").stat().st_size > 0, name
    for log in ["mock_survey", "dust", "assemble", "train"]:
        assert (workdir / "results" / "logs" / f"{log}.log").stat().st_size > 0, log


def test_nothing_left_to_do_after_a_run(tiny_run):
    workdir, config = tiny_run
    out = run_snakemake(workdir, config, "-n")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changing_a_cut_reruns_only_assembly_and_downstream(tiny_run):
    workdir, config = tiny_run
    changed = copy.deepcopy(config)
    changed["cuts"]["mass"] = [0.6, 4.0]
    out = run_snakemake(workdir, changed, "-n", name="config_cut.yaml")
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = scheduled_jobs(out.stdout + out.stderr)
    assert "assemble" in jobs
    assert not EXPENSIVE & set(jobs), f"expensive stages rescheduled: {jobs}"
    assert set(jobs) <= DOWNSTREAM_OF_ASSEMBLY


def test_changing_a_dust_setting_reruns_dust_but_not_the_archive(tiny_run):
    workdir, config = tiny_run
    changed = copy.deepcopy(config)
    changed["dust"]["n_samples"] = 500
    jobs = scheduled_jobs(run_snakemake(workdir, changed, "-n", name="config_dust.yaml").stdout)
    assert "dust" in jobs and "assemble" in jobs
    assert not {"mock_survey", "gaia_source", "gaia_xp", "zero_point", "labels"} & set(jobs)


def figure_rules(*reads: str) -> set[str]:
    """The figure rules that read any of ``reads`` (dataset, model, predictions)."""
    return {f"figure_{n}" for n, entry in FIGURES.items() if set(entry["inputs"]) & set(reads)}


# the report's summary page shows the configuration, so any config change reruns it
LEARNING = {"train", "evaluate", "report_summary"} | figure_rules("model", "predictions")
FROM_ASSEMBLY = ({"assemble", "train", "baseline", "evaluate", "report_summary"}
                 | figure_rules("dataset", "model", "predictions"))


@pytest.mark.parametrize("key, value, reruns", [
    ("recipes.cpu.lr", 1e-3, LEARNING),
    ("recipes.paper.lr", 1e-3, {"report_summary"}),           # not the recipe in use
    ("train.seed", 4, LEARNING),
    ("baseline.n_estimators", 10, {"baseline", "evaluate", "report_summary"}
     | figure_rules("predictions")),
    ("figures.fig12_bp_rp_inpainting.seed", 1, {"figure_fig12_bp_rp_inpainting", "report_summary"}),
    ("zero_point.extra_term_mas", 0.004, {"zero_point", "dust"} | FROM_ASSEMBLY),
    ("apogee.distmass_age_unit", "Gyr", {"labels"} | FROM_ASSEMBLY),
], ids=lambda v: v if isinstance(v, str) else None)
def test_changing_a_setting_reruns_exactly_its_rules(tiny_run, key, value, reruns):
    workdir, config = tiny_run
    changed = copy.deepcopy(config)
    *path, last = key.split(".")
    node = changed
    for part in path:
        node = node[part]
    node[last] = value
    out = run_snakemake(workdir, changed, "-n", name=f"config_{key}.yaml")
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    jobs = set(scheduled_jobs(text)) - {"all"} if "Job stats:" in text else set()
    assert jobs == reruns, text[-1500:]


def test_html_report_builds(tiny_run):
    workdir, config = tiny_run
    report = workdir / "report.html"
    out = run_snakemake(workdir, config, "--report", str(report))
    assert out.returncode == 0, out.stderr[-2000:]
    assert report.stat().st_size > 10_000


def test_real_mode_dry_run_has_the_same_stages(tmp_path):
    config = default_config()
    mock = scheduled_jobs(run_snakemake(tmp_path, config, "-n").stdout)
    config["mode"] = "real"
    out = run_snakemake(tmp_path, config, "-n")
    assert out.returncode == 0, out.stderr[-2000:]
    real = scheduled_jobs(out.stdout)
    # the sources differ (one mock stage vs two downloads); every stage after them is shared
    assert set(mock) - {"mock_survey"} == set(real) - {"download_apogee"}
    assert real["download_apogee"] == 2


def test_real_mode_with_local_catalogues_downloads_nothing(tmp_path):
    config = default_config()
    config["mode"] = "real"
    for key in ("allstar_path", "distmass_path"):
        path = tmp_path / f"{key}.fits"
        path.write_bytes(b"")
        config["apogee"][key] = str(path)
    out = run_snakemake(tmp_path, config, "-n")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "download_apogee" not in scheduled_jobs(out.stdout)


def test_slurm_profile_dry_run(tmp_path, repo_root, monkeypatch):
    monkeypatch.setenv("STARFM_SLURM_PARTITION", "cpu")
    monkeypatch.setenv("STARFM_SLURM_GPU_PARTITION", "gpu")
    out = run_snakemake(tmp_path, default_config(), "-n", "--workflow-profile",
                        str(repo_root / "workflow" / "profiles" / "slurm"))
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    train = text.split("rule train:")[1].split("rule ")[0]
    assert "slurm_partition=gpu" in train and "gpu=1" in train
    dust = text.split("rule dust:")[1].split("rule ")[0]
    assert "slurm_partition=cpu" in dust and "gpu=" not in dust
