"""The Slurm profile as Snakemake reads it (fast, no cluster needed): site names come from the
environment and nothing site-specific is written in it, every rule has memory and time that
grow per retry (Snakemake's own evaluator of profile resource expressions), training asks for
a GPU while the data stages do not, and what retries resume from is never a rule output."""
from __future__ import annotations

import re

import pytest

from helpers import REPO_ROOT

PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
RULES_DIR = REPO_ROOT / "workflow" / "rules"
SITE_VARS = ("STARFM_SLURM_ACCOUNT", "STARFM_SLURM_PARTITION", "STARFM_SLURM_GPU_PARTITION",
             "STARFM_SLURM_QOS", "STARFM_SLURM_GPU_QOS", "STARFM_SLURM_GPUS", "STARFM_SLURM_GPU_MODEL")


def _render(monkeypatch, **env) -> dict:
    """The profile rendered as Snakemake renders it (YTE, with this environment)."""
    import yte

    for var in SITE_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    with open(PROFILE) as f:
        return yte.process_yaml(f, require_use_yte=True)


def _rule_names() -> set[str]:
    """Every rule of the workflow as Snakemake lists it (generated figure rules included), but
    the local target rule `all`."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "Snakefile"),
                              "-d", tmp, "--list-rules"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(out.stdout.split()) - {"all"}


def _evaluate(expr, attempt: int) -> int:
    from snakemake.resources import Resource

    if isinstance(expr, int):
        return expr
    return Resource.cli_evaluator("x", str(expr), wildcards=None, input=None, attempt=attempt,
                                  async_run=None)


def test_site_names_come_from_the_environment_only(monkeypatch):
    bare = _render(monkeypatch)
    site_keys = {"slurm_account", "slurm_partition", "qos", "gpu_model"}
    assert not site_keys & set(bare["default-resources"])
    assert not {"slurm_partition", "qos", "gpu_model"} & set(bare["set-resources"]["train"])
    assert bare["set-resources"]["train"]["gpu"] == 1

    site = _render(monkeypatch, STARFM_SLURM_ACCOUNT="proj1", STARFM_SLURM_PARTITION="short",
                   STARFM_SLURM_QOS="normal", STARFM_SLURM_GPU_MODEL="a100")
    assert site["default-resources"]["slurm_account"] == "proj1"
    assert site["default-resources"]["slurm_partition"] == "short"
    assert site["default-resources"]["qos"] == "normal"
    train = site["set-resources"]["train"]
    # the GPU partition and QoS default to the CPU ones
    assert (train["slurm_partition"], train["qos"], train["gpu_model"]) == ("short", "normal", "a100")

    gpu = _render(monkeypatch, STARFM_SLURM_PARTITION="short", STARFM_SLURM_GPU_PARTITION="gpu",
                  STARFM_SLURM_GPU_QOS="gpuq", STARFM_SLURM_GPUS="0", STARFM_SLURM_GPU_MODEL="a100")
    train = gpu["set-resources"]["train"]
    assert (train["slurm_partition"], train["qos"]) == ("gpu", "gpuq")
    assert not {"gpu", "gpu_model", "cpus_per_gpu"} & set(train), "STARFM_SLURM_GPUS=0: CPU training"
    # nothing site-specific hard-coded anywhere in the file
    text = PROFILE.read_text()
    assert not re.search(r"^\s*(slurm_account|slurm_partition|qos):\s*[\"']?\w", text, flags=re.M)


def test_every_rule_has_resources_that_grow_per_attempt(monkeypatch):
    profile = _render(monkeypatch)
    per_rule = profile["set-resources"]
    assert set(per_rule) == _rule_names()
    assert profile["retries"] >= 1
    for rule, res in per_rule.items():
        for key in ("mem_mb", "runtime"):
            values = [_evaluate(res[key], attempt) for attempt in (1, 2, 3)]
            assert values[0] > 0 and values[0] < values[1] < values[2], (rule, key, values)
        if rule != "train":
            assert "gpu" not in res and "cpus_per_gpu" not in res, f"{rule} must stay on CPU nodes"
            assert isinstance(res.get("cpus_per_task"), int) and res["cpus_per_task"] >= 1, rule
    train = per_rule["train"]
    assert train["gpu"] == 1 and train["cpus_per_gpu"] >= 1


def test_profile_parses_as_snakemake_parses_it(monkeypatch):
    """Snakemake's own profile parser and --set-resources parser accept the rendered profile."""
    from snakemake.cli import parse_set_resources
    from snakemake.profiles import ProfileConfigFileParser

    _render(monkeypatch)   # clears the site variables
    with open(PROFILE) as f:
        parsed = ProfileConfigFileParser().parse(f)
    assert parsed["executor"] == "slurm"
    rules = parse_set_resources(parsed["set-resources"])
    assert set(rules) == _rule_names()


@pytest.fixture(scope="module")
def dry_run_jobs(tmp_path_factory):
    """{rule: (shell command, outputs)} of a dry run of the tiny configuration."""
    from helpers import run_snakemake, tiny_config

    out = run_snakemake(tmp_path_factory.mktemp("dry"), tiny_config(), "-n", "-p")
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = {}
    for block in ("\n" + out.stdout + out.stderr).split("\nrule ")[1:]:
        name = block.split(":", 1)[0].strip()
        outputs = re.search(r"^\s+output: (.*)$", block, flags=re.M)
        shell = re.search(r"python -m starfm .*$", block, flags=re.M)
        if outputs and shell:
            jobs[name] = (shell.group(0), [o.strip() for o in outputs.group(1).split(",")])
    return jobs


@pytest.mark.parametrize("rule, option", [("train", "--checkpoint"), ("gaia_source", "--cache-dir"),
                                          ("gaia_xp", "--cache-dir")])
def test_what_a_retry_resumes_from_is_not_an_output(dry_run_jobs, rule, option):
    """Snakemake deletes a failed job's outputs before the retry: the checkpoint and the Gaia
    batch caches are params (paths beside the outputs), so they survive it."""
    shell, outputs = dry_run_jobs[rule]
    path = re.search(rf"{option} (\S+)", shell).group(1)
    assert path.startswith("results/") and path not in outputs, (path, outputs)
    assert not any(o.startswith(path.rstrip("/") + "/") for o in outputs)
