"""The workflow end to end on a tiny mock survey, with Snakemake as users run it.

One small run (a few hundred stars, a couple of epochs) is shared by the tests below; they
check the outputs exist, that changing a cut reruns only assembly and what follows, that the
HTML report builds, and that real mode dry-runs the same stages.
"""
from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

EXPENSIVE = {"mock_survey", "gaia_source", "gaia_xp", "zero_point", "dust", "labels",
             "download_apogee"}
DOWNSTREAM_OF_ASSEMBLY = {"assemble", "train", "baseline", "evaluate", "figures", "all"}


def tiny_config() -> dict:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["mock"]["n_stars"] = 1500
    config["dust"]["n_samples"] = 100
    config["train"]["epochs"] = 2
    config["baseline"]["n_estimators"] = 20
    return config


def snakemake(workdir: Path, config: dict, *args: str, name="config.yaml"):
    cfg = workdir / name
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir),
           "--configfile", str(cfg), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def scheduled_jobs(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into {rule: count}."""
    block = output.split("Job stats:")[1]
    jobs = {}
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    config = tiny_config()
    out = snakemake(workdir, config)
    assert out.returncode == 0, out.stderr[-4000:]
    return workdir, config


def test_run_writes_every_product(finished_run):
    workdir, _ = finished_run
    for rel in ["results/dataset.h5", "results/metrics.json", "results/model/model.pt",
                "results/baseline/xgboost.json", "results/dust/extinction.h5",
                "results/gaia/xp_continuous.h5", "results/catalogue/labels.h5"]:
        assert (workdir / rel).stat().st_size > 0, rel
    assert list((workdir / "results" / "figures").glob("*.png"))
    assert (workdir / "results" / "logs" / "dust.log").exists()


def test_nothing_left_to_do_after_a_run(finished_run):
    workdir, config = finished_run
    out = snakemake(workdir, config, "-n")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Nothing to be done" in out.stdout + out.stderr


def test_changing_a_cut_reruns_only_assembly_and_downstream(finished_run):
    workdir, config = finished_run
    changed = copy.deepcopy(config)
    changed["cuts"]["mass"] = [0.6, 4.0]
    out = snakemake(workdir, changed, "-n", name="config_cut.yaml")
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = scheduled_jobs(out.stdout + out.stderr)
    assert "assemble" in jobs
    assert not EXPENSIVE & set(jobs), f"expensive stages rescheduled: {jobs}"
    assert set(jobs) <= DOWNSTREAM_OF_ASSEMBLY


def test_html_report_builds(finished_run):
    workdir, config = finished_run
    out = snakemake(workdir, config, "--report", str(workdir / "report.html"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert (workdir / "report.html").stat().st_size > 10_000


def test_real_mode_dry_run_has_the_same_stages(tmp_path):
    config = tiny_config()
    mock = scheduled_jobs(snakemake(tmp_path, config, "-n").stdout)
    config["mode"] = "real"
    out = snakemake(tmp_path, config, "-n")
    assert out.returncode == 0, out.stderr[-2000:]
    real = scheduled_jobs(out.stdout)
    # the sources differ (one mock stage vs two downloads); every stage after them is shared
    assert set(mock) - {"mock_survey"} == set(real) - {"download_apogee"}
    assert real["download_apogee"] == 2
