"""Run the data half of the workflow (mock survey -> dataset.h5) at the real allStar size and
print each rule's wall time and peak memory (Snakemake's benchmark files), against the
issue's budget (30 minutes, 8 GiB).

    python benchmarks/full_scale.py [--n-stars 733901] [--workdir /tmp/starfm_full]
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-stars", type=int, default=733901)
    p.add_argument("--workdir", default="/tmp/starfm_full")
    p.add_argument("--cores", type=int, default=2)
    args = p.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["mock"]["n_stars"] = args.n_stars
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
                    "--configfile", str(work / "config.yaml"), "--cores", str(args.cores),
                    "--until", "assemble", "--quiet"], check=True)
    wall = time.perf_counter() - t0
    print(f"{'rule':<14}{'seconds':>10}{'max RSS [MiB]':>16}")
    peak = 0.0
    for tsv in sorted((work / "results" / "benchmarks").glob("*.tsv")):
        with open(tsv) as f:
            row = next(csv.DictReader(f, delimiter="\t"))
        rss = float(row["max_rss"]) if row["max_rss"] not in ("-", "NA") else float("nan")
        peak = max(peak, rss)
        print(f"{tsv.stem:<14}{float(row['s']):>10.1f}{rss:>16.0f}")
    print(f"n_stars={args.n_stars}  total wall {wall / 60:.1f} min (budget 30)  "
          f"peak job memory {peak / 1024:.2f} GiB (budget 8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
