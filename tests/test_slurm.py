"""The workflow through a real Slurm scheduler: the tiny test configuration (.test/config.yaml)
runs with the shipped profile (workflow/profiles/slurm) on a single-node cluster on this
machine (.ci/slurm-cluster.sh), and must give the same metrics.json as a local run.

Local overrides are layered on top of the shipped profile, never written into it: the
profile is rendered as Snakemake renders it (YTE, with the environment: partition `debug`, no
GPU for training since this node has none), then squeue status queries (no accounting
database here), a short first status check, Slurm logs kept, and memory/CPU
requests capped at what the one node has. Needs root and Debian's slurm-wlm + munge; skips
with the reason otherwise (STARFM_REQUIRE_SLURM=1, set by .ci/run once it started the
cluster, turns a skip into a failure)."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from helpers import REPO_ROOT, scheduled_jobs

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

CLUSTER = REPO_ROOT / ".ci" / "slurm-cluster.sh"
PROFILE = REPO_ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
TEST_CONFIG = REPO_ROOT / ".test" / "config.yaml"
RUN_TIMEOUT_S = 540          # hard limit for both workflow runs together (~3-6 min on 2 busy cores)
SLURM_BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")


def _unavailable(reason: str):
    if os.environ.get("STARFM_REQUIRE_SLURM") == "1":
        pytest.fail(f"Slurm test required (STARFM_REQUIRE_SLURM=1) but {reason}")
    pytest.skip(reason)


def _cluster(cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER), cmd], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def slurm_env():
    """Environment for Slurm clients with the test cluster up (started here if need be and
    stopped again afterwards; left running if it was already up)."""
    missing = [b for b in SLURM_BINARIES if shutil.which(b) is None]
    started = False
    if _cluster("status").returncode != 0:
        if missing:
            _unavailable(f"no local Slurm cluster: {', '.join(missing)} not installed "
                         "(as root: apt-get install -y slurm-wlm munge; .ci/slurm-cluster.sh up)")
        if os.geteuid() != 0:
            _unavailable("no local Slurm cluster up, and starting one needs root "
                         "(.ci/slurm-cluster.sh up)")
        up = _cluster("up")
        if up.returncode != 0:
            _unavailable(f"cannot start the local Slurm cluster: {(up.stderr or up.stdout).strip()[-1500:]}")
        started = True
    conf = _cluster("env").stdout.strip().split("=", 1)[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STARFM_SLURM_", "SBATCH_", "SLURM_"))}
    env["SLURM_CONF"] = conf
    yield env
    if started:
        _cluster("down")


def _node_limits(env) -> tuple[int, int]:
    """(CPUs, RealMemory MB) of the cluster's one node."""
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%c %m"], capture_output=True, text=True,
                         env=env, check=True).stdout.split()
    return int(out[0]), int(out[1])


def _layered_profile(env, profile_dir: Path) -> dict:
    """The shipped profile rendered as Snakemake does, with the local overrides on top."""
    import yte

    with open(PROFILE) as f:
        old = dict(os.environ)
        try:
            os.environ.update({"STARFM_SLURM_PARTITION": "debug", "STARFM_SLURM_GPUS": "0"})
            for key in ("STARFM_SLURM_ACCOUNT", "STARFM_SLURM_GPU_PARTITION", "STARFM_SLURM_QOS",
                        "STARFM_SLURM_GPU_QOS", "STARFM_SLURM_GPU_MODEL"):
                os.environ.pop(key, None)
            profile = yte.process_yaml(f, require_use_yte=True)
        finally:
            os.environ.clear()
            os.environ.update(old)
    cpus, mem = _node_limits(env)
    assert profile["executor"] == "slurm" and profile["retries"] >= 1
    assert profile["default-resources"]["slurm_partition"] == "debug"
    train = profile["set-resources"]["train"]
    assert not {"gpu", "gpu_model", "cpus_per_gpu"} & set(train), train   # STARFM_SLURM_GPUS=0
    for rule, res in profile["set-resources"].items():
        if "mem_mb" in res:
            res["mem_mb"] = f"min({res['mem_mb']}, {mem})"
        if "cpus_per_task" in res:
            res["cpus_per_task"] = f"min({res['cpus_per_task']}, {cpus})"
    if profile.get("set-threads"):
        profile["set-threads"] = {r: min(int(t), cpus) for r, t in profile["set-threads"].items()}
    profile.update({
        "slurm-status-command": "squeue",            # no accounting database: sacct knows nothing
        "slurm-init-seconds-before-status-checks": 2,  # MinJobAge (3600 s) >= 3x this
        "slurm-keep-successful-logs": True,
        "latency-wait": 5,
    })
    profile_dir.mkdir()
    (profile_dir / "config.yaml").write_text(yaml.safe_dump(profile))
    return profile


def _start(workdir: Path, *args: str, env=None) -> subprocess.Popen:
    workdir.mkdir()
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO_ROOT / "Snakefile"), "-d", str(workdir),
           "--configfile", str(TEST_CONFIG), *args]
    log = open(workdir.parent / f"{workdir.name}.log", "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=workdir, env=env,
                            start_new_session=True, text=True)


def _wait_all(procs: dict[str, subprocess.Popen], deadline: float, env) -> dict[str, str]:
    """Wait for the workflow runs until ``deadline``; past it, or as soon as one fails, stop
    the others (cancelling their Slurm jobs). Returns each run's log."""
    while time.monotonic() < deadline:
        codes = [p.poll() for p in procs.values()]
        if all(c is not None for c in codes) or any(c not in (None, 0) for c in codes):
            break
        time.sleep(1)
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    subprocess.run(["scancel", "--user", str(os.getuid())], env=env, capture_output=True)
    return {name: Path(p.args[p.args.index("-d") + 1] + ".log").read_text()
            for name, p in procs.items()}


def test_workflow_runs_through_slurm_like_locally(slurm_env, tmp_path):
    t0 = time.monotonic()
    deadline = t0 + RUN_TIMEOUT_S
    overrides = tmp_path / "slurm-local"
    _layered_profile(slurm_env, overrides)
    # both runs at once: the local one on 2 cores, the Slurm one on the node's 2 CPUs
    slurm = _start(tmp_path / "slurm", "--workflow-profile", str(overrides), env=slurm_env)
    local = _start(tmp_path / "local", "--cores", "2")
    try:
        logs = _wait_all({"slurm": slurm, "local": local}, deadline, slurm_env)
    finally:   # also when the test itself is interrupted
        for proc in (slurm, local):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    slurm_log, local_log = logs["slurm"], logs["local"]
    elapsed = time.monotonic() - t0
    assert local.returncode == 0, f"local run failed:\n{local_log[-4000:]}"
    assert slurm.returncode == 0, (f"Slurm run failed or timed out ({elapsed:.0f} s, limit "
                                   f"{RUN_TIMEOUT_S} s):\n{slurm_log[-6000:]}")

    # every job but the target went through Slurm: submitted with a Slurm job id, ...
    expected = {rule for rule in scheduled_jobs(local_log) if rule != "all"}
    submitted = {}
    for m in re.finditer(r"Job (\d+) has been submitted with SLURM jobid (\d+) "
                         r"\(log: ([^)]+)\)", slurm_log):
        log_file = Path(m.group(3))
        rule = log_file.parent.name.removeprefix("rule_")
        submitted[m.group(2)] = (rule, log_file)
    assert {rule for rule, _ in submitted.values()} == expected, submitted
    ran_locally = set(re.findall(r"^localrule (\w+):", slurm_log, flags=re.M)) - {"all"}
    assert not ran_locally, f"rules run outside Slurm: {ran_locally}"
    # ... that Slurm itself ran to completion (squeue keeps finished jobs for MinJobAge, an hour) ...
    queue = subprocess.run(["squeue", "--states=all", "--noheader", "--format=%i|%T|%k"],
                           capture_output=True, text=True, env=slurm_env, check=True).stdout
    states = {line.split("|")[0]: line.split("|", 2)[1:] for line in queue.splitlines() if line}
    for job_id, (rule, log_file) in submitted.items():
        assert job_id in states, f"Slurm job {job_id} ({rule}) unknown to squeue:\n{queue}"
        state, comment = states[job_id]
        assert state == "COMPLETED" and rule in comment, (job_id, rule, state, comment)
        # ... and whose Slurm log shows the job step running the rule
        assert log_file.exists() and rule in log_file.read_text(), log_file

    # the same science as a local run: training on one thread is bit-reproducible
    local_metrics = json.loads((tmp_path / "local" / "results" / "metrics.json").read_text())
    slurm_metrics = json.loads((tmp_path / "slurm" / "results" / "metrics.json").read_text())
    assert slurm_metrics == local_metrics
    assert len(list((tmp_path / "slurm" / "results" / "figures").glob("*.png"))) >= 3
    print(f"Slurm + local runs: {elapsed:.0f} s, {len(submitted)} Slurm jobs")
