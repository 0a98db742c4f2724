"""Benchmark: starfm's vectorised Combined19 against mwdust.Combined19, same map, stars and draws.

    python benchmarks/dust_mc.py                      # 200 stars x 1000 samples through mwdust
    python benchmarks/dust_mc.py --full-stage         # also the whole stage, 733,901 stars x 1000

A synthetic hierarchical map (nside 64/128/256, some sky uncovered) is written in mwdust's
format to a temporary DUST_DIR; mwdust runs in a subprocess pointed at it (it reads DUST_DIR on
import). Prints the speed of both, ``speedup: NNNx  max|dE(B-V)|: X`` and, with --full-stage,
the wall time and peak memory of ``python -m starfm dust`` on allStar-sized input.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from starfm.dust_map import DISTMODS, Combined19Map, combined19_path, interpolate_ebv, write_combined19
from starfm.dust_mc import SAMPLES_PER_CHUNK

MWDUST = textwrap.dedent("""
    import sys, time
    import numpy as np
    import mwdust
    p = np.load(sys.argv[1])
    m = mwdust.Combined19()
    n_samples = p["d"].shape[1]
    l, b = np.repeat(p["l"], n_samples), np.repeat(p["b"], n_samples)
    t0 = time.perf_counter()
    ebv = m(l, b, p["d"].ravel())
    seconds = time.perf_counter() - t0
    np.savez(sys.argv[2], ebv=ebv.reshape(p["d"].shape), seconds=seconds)
""")


def synthetic_map(rng: np.random.Generator, base_nside: int = 64):
    """~8% of the base-level sky uncovered, the rest at nside 64, 128 or 256 (shuffled rows)."""
    n_base = 12 * base_nside ** 2
    state = rng.random(n_base)
    keep0 = np.flatnonzero((state >= 0.08) & (state < 0.6))
    children = (np.flatnonzero(state >= 0.6)[:, None] * 4 + np.arange(4)).ravel()
    cstate = rng.random(len(children))
    keep1 = children[cstate < 0.7]
    keep2 = (children[cstate >= 0.7][:, None] * 4 + np.arange(4)).ravel()
    nside = np.repeat([base_nside, 2 * base_nside, 4 * base_nside],
                      [len(keep0), len(keep1), len(keep2)])
    hp_index = np.concatenate([keep0, keep1, keep2])
    steps = rng.exponential(0.02, (len(nside), len(DISTMODS)))
    steps *= rng.random(steps.shape) < 0.7
    curves = np.cumsum(steps, axis=1)
    perm = rng.permutation(len(nside))
    return nside[perm], hp_index[perm], curves[perm]


def synthetic_stars(rng: np.random.Generator, n: int):
    """Sky positions and parallaxes roughly like APOGEE giants (0.05-3 mas, 2-30% errors)."""
    glon = rng.uniform(0, 360, n)
    glat = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    parallax = np.exp(rng.uniform(np.log(0.05), np.log(3.0), n))
    parallax_error = parallax * rng.uniform(0.02, 0.3, n)
    return glon, glat, parallax, parallax_error


def compare(dust_dir: Path, work: Path, n_mwdust: int, n_ours: int, n_samples: int, seed: int):
    rng = np.random.default_rng(seed)
    glon, glat, plx, err = synthetic_stars(rng, n_ours)
    distance = 1.0 / (plx[:, None] + err[:, None] * rng.standard_normal((n_ours, n_samples)))
    distance = np.where(distance > 0, distance, 99.0)     # both codes get the same valid d

    np.savez(work / "points.npz", l=glon[:n_mwdust], b=glat[:n_mwdust], d=distance[:n_mwdust])
    proc = subprocess.run([sys.executable, "-c", MWDUST, str(work / "points.npz"),
                           str(work / "mwdust.npz")], env=dict(os.environ, DUST_DIR=str(dust_dir)),
                          capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"mwdust failed:\n{proc.stderr}")
    ref = np.load(work / "mwdust.npz")
    mw_rate = ref["ebv"].size / float(ref["seconds"])

    dust_map = Combined19Map.from_dust_dir(dust_dir, load=True)
    t0 = time.perf_counter()
    curves, row = dust_map.lines_of_sight(glon, glat)    # pixel lookup once per star
    ours = np.empty_like(distance)
    chunk = max(1, SAMPLES_PER_CHUNK // n_samples)        # the stage's chunking
    for start in range(0, n_ours, chunk):
        sl = slice(start, start + chunk)
        ours[sl] = interpolate_ebv(curves, row[sl, None], distance[sl])
    ours_seconds = time.perf_counter() - t0
    our_rate = ours.size / ours_seconds

    t0 = time.perf_counter()                              # the generic (l, b, d) call, per point
    flat = dust_map(np.repeat(glon[:n_mwdust], n_samples), np.repeat(glat[:n_mwdust], n_samples),
                    distance[:n_mwdust].ravel())
    call_rate = flat.size / (time.perf_counter() - t0)

    a, b = ours[:n_mwdust], ref["ebv"]
    assert np.array_equal(np.isnan(a), np.isnan(b)), "NaN patterns differ"
    assert np.array_equal(flat.reshape(a.shape), a, equal_nan=True)
    max_diff = float(np.nanmax(np.abs(a - b))) if np.isfinite(b).any() else 0.0
    print(f"map: {dust_map.n_pixels} pixels, nside {sorted(set(dust_map.nside.tolist()))}; "
          f"{np.isnan(b).mean():.1%} of mwdust points outside the map")
    print(f"mwdust.Combined19 : {ref['ebv'].size:>11,d} points in {float(ref['seconds']):7.2f} s "
          f"= {mw_rate:12,.0f} points/s")
    print(f"starfm (per star) : {ours.size:>11,d} points in {ours_seconds:7.2f} s "
          f"= {our_rate:12,.0f} points/s")
    print(f"starfm (l,b,d)    : {flat.size:>11,d} points             = {call_rate:12,.0f} points/s")
    print(f"speedup: {our_rate / mw_rate:.0f}x  max|dE(B-V)|: {max_diff:.3g}")


def full_stage(dust_dir: Path, work: Path, n_stars: int, n_samples: int, seed: int):
    from astropy.io import fits

    from starfm.tables import write_table

    rng = np.random.default_rng(seed + 1)
    glon, glat, plx, err = synthetic_stars(rng, n_stars)
    ids = np.arange(n_stars, dtype=np.int64) * 7919 + 4_000_000_000_000
    plx_raw = plx + rng.normal(0, 1, n_stars) * err      # some raw parallaxes <= 0
    ids_allstar = ids.copy()
    ids_allstar[rng.random(n_stars) < 0.01] = 0           # unmatched rows, as in allStar
    cols = [fits.Column("GAIAEDR3_SOURCE_ID", "K", array=ids_allstar),
            fits.Column("GLON", "D", array=glon), fits.Column("GLAT", "D", array=glat)]
    fits.BinTableHDU.from_columns(cols).writeto(work / "allStar.fits", overwrite=True)
    write_table(work / "gaia_source.h5", {"source_id": ids, "parallax": plx_raw,
                                          "parallax_error": err,
                                          "ruwe": rng.uniform(0.8, 1.6, n_stars)})
    write_table(work / "parallax.h5", {"source_id": ids, "parallax_corrected": plx_raw + 0.02})
    cmd = [sys.executable, "-m", "starfm", "dust", "--allstar", str(work / "allStar.fits"),
           "--gaia-source", str(work / "gaia_source.h5"), "--parallax", str(work / "parallax.h5"),
           "--dust-dir", str(dust_dir), "--n-samples", str(n_samples), "--seed", "1",
           "--out", str(work / "extinction.h5")]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    seconds = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
    print(f"full stage: {n_stars:,d} allStar rows x {n_samples} samples in {seconds:.0f} s, "
          f"peak memory {peak_gib:.2f} GiB")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mwdust-stars", type=int, default=200)
    parser.add_argument("--ours-stars", type=int, default=20_000)
    parser.add_argument("--n-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-stage", action="store_true",
                        help="also run `python -m starfm dust` on --full-stars synthetic stars")
    parser.add_argument("--full-stars", type=int, default=733_901)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="starfm-dust-bench-") as tmp:
        tmp = Path(tmp)
        write_combined19(combined19_path(tmp / "dust"), *synthetic_map(np.random.default_rng(args.seed)))
        compare(tmp / "dust", tmp, args.mwdust_stars, max(args.ours_stars, args.mwdust_stars),
                args.n_samples, args.seed)
        if args.full_stage:
            full_stage(tmp / "dust", tmp, args.full_stars, args.n_samples, args.seed)


if __name__ == "__main__":
    main()
