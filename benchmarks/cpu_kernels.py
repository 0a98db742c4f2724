"""What the portable CPU-kernel pins cost (starfm.kernels; config ``cpu_kernels``).

Times whole stage commands, as the workflow runs them, with ``STARFM_CPU_KERNELS=portable``
(numpy, OpenBLAS, ATen, oneDNN and MKL on their AVX2 kernels) and ``native`` (each library's
own choice for this CPU), alternating the two so machine load hits both alike, and prints the
ratio portable / native per stage. On an AVX2-only CPU the two are the same code and the ratio
is 1 within noise; the cost shows on AVX-512 CPUs.

    python benchmarks/cpu_kernels.py --results results        # after a default run
    python benchmarks/cpu_kernels.py --repeat 3 --epochs 2

Stages: ``mock-survey`` (numpy: the data stages' kind of work), ``train`` (torch: epochs of
the shipped recipe on the run's dataset.h5), ``predict`` (torch inference on the real chunk0
XP file, 2,000 sources).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK0 = ROOT.parent / "shared" / "realdata" / "xp" / "xp_spectral_lines" / "xp_continuous_combined_chunk0.fits"


def _env(mode: str) -> dict:
    from starfm.kernels import ENV_VAR, PORTABLE_PINS

    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_PINS}
    env[ENV_VAR] = mode
    return env


def _time(cmd: list[str], mode: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=_env(mode), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=ROOT / "results", help="a finished default run's results/")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1, help="training epochs per timing")
    p.add_argument("--mock-stars", type=int, default=5000)
    args = p.parse_args(argv)
    py = [sys.executable, "-m", "starfm"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        stages = {
            "mock-survey": py + ["mock-survey", "--out-dir", str(tmp / "mock"),
                                 "--settings", json.dumps({"n_stars": args.mock_stars})],
            "train": py + ["train", "--dataset", str(args.results / "dataset.h5"), "--no-progress",
                           "--loss-log", str(tmp / "loss.csv"), "--out", str(tmp / "model.pt"),
                           "--settings", json.dumps({"epochs": args.epochs})],
            "predict": py + ["predict", "--model", str(args.results / "model" / "model.pt"),
                             "--xp", str(CHUNK0), "--out", str(tmp / "chunk0.h5")],
        }
        print(f"{'stage':<12}{'portable [s]':>14}{'native [s]':>12}{'ratio':>8}")
        for name, cmd in stages.items():
            times = {"portable": [], "native": []}
            for _ in range(args.repeat):
                for mode in ("native", "portable"):
                    times[mode].append(_time(cmd, mode))
            port, nat = statistics.median(times["portable"]), statistics.median(times["native"])
            print(f"{name:<12}{port:>14.2f}{nat:>12.2f}{port / nat:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
