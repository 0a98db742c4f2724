"""Shared fixtures: where the real-data fixtures live, and the repository root."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# The test process computes with the kernels the workflow's stages use (starfm.kernels): the
# pins are read when numpy and torch load, so they are set before anything imports them.
from starfm import kernels

kernels.pin()
if "numpy" in sys.modules or "torch" in sys.modules:  # a plugin loaded them first
    sys.stderr.write("conftest: numpy/torch were imported before the CPU-kernel pins; "
                     "numbers may differ from the workflow's\n")

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_dir() -> Path:
    env = os.environ.get("STARFM_SHARED")
    return Path(env) if env else REPO_ROOT.parent / "shared"


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train/predict on one torch thread (2 shared cores: more threads only add contention at
    test sizes, and one thread is bit-reproducible); restores the previous count afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """``../shared/realdata`` (real Gaia/APOGEE files); CI clones with ``../shared`` beside it."""
    path = _shared_dir() / "realdata"
    if not path.is_dir():
        pytest.fail(f"real-data fixtures not found at {path} (set STARFM_SHARED)")
    return path


def run_snakemake(workdir: Path, config: dict, *args: str, name: str = "config.yaml"):
    """Run this checkout's workflow in ``workdir`` with ``config`` (written to ``name``)."""
    import subprocess
    import sys

    import yaml

    cfg = workdir / name
    cfg.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "Snakefile"),
           "-d", str(workdir), "--configfile", str(cfg), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def scheduled_jobs(output: str) -> dict[str, int]:
    """Parse Snakemake's 'Job stats' table into {rule: count}."""
    import re

    assert "Job stats:" in output, output[-2000:]
    block = output.split("Job stats:")[1]
    jobs = {}
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


def default_config() -> dict:
    import yaml

    return yaml.safe_load((REPO_ROOT / "config.yaml").read_text())


def merged(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base`` key by key, as Snakemake merges --configfile."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def tiny_config() -> dict:
    """config.yaml with .test/config.yaml's overrides: the tiny end-to-end run (~1.5 min)."""
    import yaml

    return merged(default_config(), yaml.safe_load((REPO_ROOT / ".test" / "config.yaml").read_text()))


def _workflow_run(tmp_path_factory, name: str, config: dict):
    """``config`` run once end to end with Snakemake in a new temporary directory."""
    workdir = tmp_path_factory.mktemp(name)
    out = run_snakemake(workdir, config)
    if out.returncode != 0:
        pytest.fail(f"{name} workflow failed:\n{out.stderr[-6000:]}")
    return workdir, config


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The workflow end to end on the tiny test configuration (.test/config.yaml), run once with
    Snakemake in a temporary directory; the workflow tests read its outputs."""
    return _workflow_run(tmp_path_factory, "tiny_run", tiny_config())


@pytest.fixture(scope="session")
def default_run(tmp_path_factory):
    """The default workflow (config.yaml as shipped: 20,000-star mock survey) run once, end to
    end, with Snakemake in a temporary directory. Science and workflow tests read its outputs.

    ``STARFM_DEFAULT_RUN_DIR=DIR`` checks a run you already have instead (e.g. another seed, or
    made with ``ATEN_CPU_CAPABILITY=default``; benchmarks/science_spread.py): the workflow is
    brought up to date in DIR with DIR's own ``config.yaml`` (written by an earlier test run, or
    the shipped one merged with DIR/over.yaml when that exists)."""
    reuse = os.environ.get("STARFM_DEFAULT_RUN_DIR")
    if not reuse:
        return _workflow_run(tmp_path_factory, "default_run", default_config())
    import yaml

    workdir = Path(reuse).resolve()
    over = workdir / "over.yaml"
    config = merged(default_config(), yaml.safe_load(over.read_text()) if over.exists() else {})
    out = run_snakemake(workdir, config, name="test_config.yaml")
    if out.returncode != 0:
        pytest.fail(f"default run in {workdir} failed:\n{out.stderr[-6000:]}")
    return workdir, config


def rv25_config() -> dict:
    """config.yaml with the mock's extinction law switched to F99 R_V = 2.5 (issue 9)."""
    return merged(default_config(), {"mock": {"extinction_r_v": 2.5}})


@pytest.fixture(scope="session")
def rv25_run(tmp_path_factory):
    """The default configuration with a mock injected with F99 R_V = 2.5, run with Snakemake up
    to the Fig. 16 stage's extinction_curve.json (mock, data stages, training; ~5 min)."""
    config = rv25_config()
    workdir = tmp_path_factory.mktemp("rv25_run")
    out = run_snakemake(workdir, config, f"{config['results']}/evaluation/extinction_curve.json")
    if out.returncode != 0:
        pytest.fail(f"rv25 workflow failed:\n{out.stderr[-6000:]}")
    return workdir, config
