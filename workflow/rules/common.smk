# Helpers every rule file uses: output paths, the stage command, and the data-source switch.
import json
import os

RESULTS = config["results"]
MODE = config["mode"]
# Rules run the package from this checkout, whatever environment (pip or conda) they run in.
STARFM = f"PYTHONPATH={workflow.basedir}/src${{PYTHONPATH:+:$PYTHONPATH}} python -m starfm"


def R(path):
    """A path under the results directory."""
    return os.path.join(RESULTS, path)


def as_json(obj):
    """A config section as a shell-quoted JSON argument."""
    return "'" + json.dumps(obj, sort_keys=True) + "'"


# ---- data sources: the only place where mock and real differ -------------------------
ALLSTAR_NAME = "allStar-dr17-synspec_rev1.fits"
DISTMASS_NAME = "APOGEE_DistMass-DR17_v1.6.1.fits"


def allstar_file():
    if MODE == "mock":
        return R(f"mock/apogee/{ALLSTAR_NAME}")
    return config["apogee"]["allstar_path"] or R(f"download/{ALLSTAR_NAME}")


def distmass_file():
    if MODE == "mock":
        return R(f"mock/apogee/{DISTMASS_NAME}")
    return config["apogee"]["distmass_path"] or R(f"download/{DISTMASS_NAME}")


def archive_inputs():
    """Files the Gaia query rules need besides allStar (the mock archive's tables)."""
    return [R("mock/gaia_archive/manifest.json")] if MODE == "mock" else []


def archive_args():
    if MODE == "mock":
        return f"--archive mock --mock-archive-dir {R('mock/gaia_archive')}"
    return "--archive gaia"


# benchmark files of the source stages (the report's run-time table)
SOURCE_BENCHMARKS = [R("benchmarks/mock_survey.tsv")] if MODE == "mock" else []


def dust_map_inputs():
    return [R("mock/dust/combined19/combine19.h5")] if MODE == "mock" else []


def dust_dir():
    if MODE == "mock":
        return R("mock/dust")
    return config["dust"]["dust_dir"] or os.environ.get("DUST_DIR", os.path.expanduser("~/.mwdust"))


def truth_inputs(wildcards):
    """Known truth (mock survey only): passed to assembly when it exists."""
    return {"truth": R("mock/truth.h5")} if MODE == "mock" else {}


def truth_arg(wildcards, input):
    return f"--truth {input.truth}" if "truth" in input.keys() else ""
