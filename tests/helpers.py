"""Helpers shared by the tests, in one place: the repository root, running the workflow, the
configurations, and the tiny model configurations with the tiny trained model (a fixture,
made available to every test by conftest.py). Import them with ``from helpers import ...``."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


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


def rv25_config() -> dict:
    """config.yaml with the mock's extinction law switched to F99 R_V = 2.5 (issue 9)."""
    return merged(default_config(), {"mock": {"extinction_r_v": 2.5}})


# ---- tiny models --------------------------------------------------------------------------------


def _model_config(**kwargs):
    from starfm.model import ModelConfig
    return ModelConfig(**kwargs)


# the tiny trained model of the inference, predict and generate tests (trained by
# ``tiny_trained_model``); the untrained tiny network of the model tests (no dropout)
TINY = _model_config(d_model=16, n_heads=2, encoder_ff=(32,), decoder_ff=(32,), head_hidden=(32,))
TINY_NET = _model_config(d_model=16, n_heads=2, encoder_ff=(32, 32), decoder_ff=(32, 32),
                         head_hidden=(32,), dropout=0.0)


@pytest.fixture(scope="session")
def tiny_trained_model(tmp_path_factory) -> Path:
    """Directory with ``dataset.h5`` (400 synthetic stars, seed 3), ``model.pt`` (TINY, one
    epoch, one torch thread) and its checkpoint ``ckpt.pt``."""
    import torch

    from starfm.train import TrainConfig, train
    from synthetic_dataset import write_synthetic_dataset

    d = tmp_path_factory.mktemp("tiny_model")
    dataset = write_synthetic_dataset(d / "dataset.h5", n_stars=400, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(dataset, d / "model.pt", d / "log.csv", d / "ckpt.pt", TINY,
              TrainConfig(epochs=1, batch_size=128, lr=1e-3, n_requests=4), "cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return d
