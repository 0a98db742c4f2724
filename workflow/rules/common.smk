# Helpers for the workflow files: output paths, config sections as JSON, the data-source switch.
import json
import os
import sys

# the APOGEE file names, defined once in the package (starfm.constants imports nothing)
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from starfm.constants import ALLSTAR_NAME, DISTMASS_NAME  # noqa: E402

RESULTS = config["results"]
MODE = config["mode"]


def R(path):
    """A path under the results directory."""
    return os.path.join(RESULTS, path)


def as_json(obj):
    """A config section as one shell-quoted JSON argument (a stage's --settings)."""
    return "'" + json.dumps(obj, sort_keys=True) + "'"


def train_settings():
    """The train stage's settings: train: plus the recipe it names (recipes.<train.recipe>)."""
    return {**config["train"], **config["recipes"][config["train"]["recipe"]]}


# ---- data sources: the only place where mock and real differ -------------------------


def allstar_file():
    if MODE == "mock":
        return R(f"mock/apogee/{ALLSTAR_NAME}")
    return config["apogee"]["allstar_path"] or R(f"download/{ALLSTAR_NAME}")


def distmass_file():
    if MODE == "mock":
        return R(f"mock/apogee/{DISTMASS_NAME}")
    return config["apogee"]["distmass_path"] or R(f"download/{DISTMASS_NAME}")


def archive_inputs():
    """Files the Gaia query rules need besides allStar (the mock archive's manifest)."""
    return {"archive": R("mock/gaia_archive/manifest.json")} if MODE == "mock" else {}


def archive_args(wildcards, input):
    if MODE == "mock":
        return f"--archive mock --mock-archive {input.archive}"
    return "--archive gaia"


def dust_map_inputs():
    """The mock's Combined19 file; in real mode the stage finds it under dust.dust_dir / $DUST_DIR."""
    return {"dust_map": R("mock/dust/combined19/combine19.h5")} if MODE == "mock" else {}


def dust_map_arg(wildcards, input):
    return f"--dust-map {input.dust_map}" if "dust_map" in input.keys() else ""


def truth_inputs(wildcards):
    """Known truth (mock survey only): passed to assembly when it exists."""
    return {"truth": R("mock/truth.h5")} if MODE == "mock" else {}


def truth_arg(wildcards, input):
    return f"--truth {input.truth}" if "truth" in input.keys() else ""


def cache_dir(name):
    """A Gaia stage's batch cache, beside its output (a rerun resumes from it)."""
    return lambda wildcards, output: os.path.join(os.path.dirname(output[0]), "cache", name)
