"""The vectorised Combined19 evaluator against mwdust itself, on a small synthetic map.

mwdust reads DUST_DIR when it is imported, so it runs in a subprocess pointed at the temp map.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import h5py
import healpy
import numpy as np
import pytest
from scipy import interpolate

from starfm.dust_map import (DISTMODS, Combined19Map, ang2pix_nest, combined19_path,
                             interpolate_ebv, write_combined19)
from starfm.errors import StarfmInputError

NSIDES = (16, 32, 64)   # three nested levels, as the real map's mix (small to keep tests fast)


def synthetic_map(rng: np.random.Generator, base_nside: int = NSIDES[0]):
    """A hierarchical map: ~8% of base pixels uncovered, the rest kept or refined once or twice.

    Some refined base pixels are also kept (the finest level must win), rows are shuffled (the
    lookup must not assume sorted pixels), and the curves contain exact zeros (near), values
    above 10 (far) and rises that extrapolate below zero under 63 pc.
    """
    n_base = 12 * base_nside ** 2
    state = rng.random(n_base)
    keep0 = np.flatnonzero((state >= 0.08) & (state < 0.5))
    refine0 = np.flatnonzero(state >= 0.5)
    keep0 = np.concatenate([keep0, refine0[:len(refine0) // 10]])   # overlapped by children
    children = (refine0[:, None] * 4 + np.arange(4)).ravel()
    cstate = rng.random(len(children))
    keep1 = children[cstate < 0.5]
    keep2 = (children[cstate >= 0.5][:, None] * 4 + np.arange(4)).ravel()
    nside = np.concatenate([np.full(len(keep0), base_nside), np.full(len(keep1), 2 * base_nside),
                            np.full(len(keep2), 4 * base_nside)])
    hp_index = np.concatenate([keep0, keep1, keep2])
    n = len(nside)
    steps = rng.exponential(0.02, (n, len(DISTMODS))) * (rng.random((n, len(DISTMODS))) < 0.7)
    curves = np.cumsum(steps, axis=1)
    curves[rng.random(n) < 0.1] *= 300.0                  # some lines of sight exceed 10
    near_zero = rng.random(n) < 0.2
    curves[near_zero, :30] = 0.0                           # exact zeros at small distances
    curves[near_zero, 30:] += 0.01
    perm = rng.permutation(n)
    return nside[perm], hp_index[perm], curves[perm]


def sample_points(rng: np.random.Generator, nside: np.ndarray, hp_index: np.ndarray):
    """Random sky and distances, the centre of pixels of every level, and awkward special cases."""
    n = 6000
    l = rng.uniform(0, 360, n)
    b = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    d = 10 ** rng.uniform(-2.5, 2.5, n)                    # distance modulus 2.5 .. 22.5
    ls, bs = [l], [b]
    for ns in NSIDES:                                      # guaranteed hits at every level
        pick = rng.choice(hp_index[nside == ns], 200)
        theta, phi = healpy.pix2ang(ns, pick, nest=True)
        ls.append(np.degrees(phi))
        bs.append(90 - np.degrees(theta))
    special_l = np.array([0.0, 360.0, 359.9999999, 180.0, 90.0, -30.0, -200.0, 390.0, 45.0])
    special_b = np.array([90.0, -90.0, 0.0, 41.81, -41.81, 60.0, -75.0, 10.0])
    sl, sb = np.meshgrid(special_l, special_b)
    ls.append(sl.ravel())
    bs.append(sb.ravel())
    l, b = np.concatenate(ls), np.concatenate(bs)
    knots_kpc = 10 ** ((DISTMODS - 10) / 5)
    special_d = np.concatenate([knots_kpc, [1e-4, 0.01, 0.063, 99.0, 500.0]])
    d = np.concatenate([d, rng.choice(special_d, len(l) - len(d))])
    # every special distance at a few random covered directions too
    extra = rng.integers(0, n, len(special_d))
    return (np.concatenate([l, l[extra]]), np.concatenate([b, b[extra]]),
            np.concatenate([d, special_d]))


MWDUST_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import mwdust
    from mwdust.util.healpix import ang2pix
    p = np.load(sys.argv[1])
    m = mwdust.Combined19()
    ebv = m(p["l"], p["b"], p["d"])
    idx = m._lbIndx(p["l"], p["b"])
    theta = (90.0 - p["b"]) * (np.pi / 180.0)         # exactly as mwdust's _lbIndx
    phi = p["l"] * (np.pi / 180.0)
    pix = {str(ns): ang2pix(ns, theta, phi, nest=True) for ns in (1, 2, 16, 64, 1024, 8192)}
    np.savez(sys.argv[2], ebv=ebv, idx=idx, **{"pix" + k: v for k, v in pix.items()})
""")


@pytest.fixture(scope="module")
def mwdust_case(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("combined19")
    rng = np.random.default_rng(20240601)
    nside, hp_index, curves = synthetic_map(rng)
    write_combined19(combined19_path(tmp), nside, hp_index, curves)
    l, b, d = sample_points(rng, nside, hp_index)
    np.savez(tmp / "points.npz", l=l, b=b, d=d)
    env = dict(os.environ, DUST_DIR=str(tmp))
    proc = subprocess.run([sys.executable, "-c", MWDUST_SCRIPT, str(tmp / "points.npz"),
                           str(tmp / "mwdust.npz")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    ref = dict(np.load(tmp / "mwdust.npz"))
    return {"dir": tmp, "l": l, "b": b, "d": d, "nside": nside, "hp_index": hp_index,
            "curves": curves, "ref": ref}


def test_agrees_with_mwdust(mwdust_case):
    c = mwdust_case
    ours = Combined19Map.from_dust_dir(c["dir"])(c["l"], c["b"], c["d"])
    ref = c["ref"]["ebv"]
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
    # Same floating-point operations as mwdust/FITPACK, so the difference is expected to be 0;
    # 1e-6 mag is the project's tolerance (far below the map's own 0.01-mag precision).
    diff = np.nanmax(np.abs(ours - ref))
    assert diff <= 1e-6, diff


def test_cases_were_covered(mwdust_case):
    """The comparison above exercised every level, uncovered sky and both extrapolations."""
    c = mwdust_case
    m = Combined19Map.from_dust_dir(c["dir"])
    pix = m.pixel_index(c["l"], c["b"])
    assert np.array_equal(pix, c["ref"]["idx"])           # the same row, -1 where uncovered
    assert (pix == -1).sum() > 50
    assert set(c["nside"][pix[pix >= 0]]) == set(NSIDES)
    dm = 5 * np.log10(c["d"][pix >= 0]) + 10
    assert (dm < DISTMODS[0]).sum() > 100 and (dm > DISTMODS[-1]).sum() > 100
    ebv = c["ref"]["ebv"]
    assert np.sum(ebv < 0) > 10 and np.sum(ebv > 10) > 10 and np.sum(ebv == 0) > 10


def test_ang2pix_matches_mwdust_bit_for_bit(mwdust_case):
    c = mwdust_case
    theta, phi = (90.0 - c["b"]) * (np.pi / 180.0), c["l"] * (np.pi / 180.0)
    for ns in (1, 2, 16, 64, 1024, 8192):
        assert np.array_equal(ang2pix_nest(ns, theta, phi), c["ref"][f"pix{ns}"]), ns


def test_ang2pix_is_healpix_inside_the_usual_range():
    """For l in [0, 360) the pixels are HEALPix's own (healpy), away from pixel edges."""
    rng = np.random.default_rng(1)
    theta = np.arccos(rng.uniform(-1, 1, 20000))
    phi = rng.uniform(0, 2 * np.pi, 20000)
    for ns in (1, 16, 256):
        assert np.array_equal(ang2pix_nest(ns, theta, phi), healpy.ang2pix(ns, theta, phi, nest=True))
    assert np.all(ang2pix_nest(16, [np.nan, 1.0], [0.5, np.inf]) == -1)


def test_interpolation_is_scipy_k1_spline_exactly():
    rng = np.random.default_rng(2)
    curves = np.cumsum(rng.exponential(0.05, (30, len(DISTMODS))), axis=1)
    dm = np.concatenate([rng.uniform(-5, 30, 3000), DISTMODS, np.nextafter(DISTMODS, 0),
                         np.nextafter(DISTMODS, 99)])
    d = 10 ** ((dm - 10) / 5)
    row = rng.integers(0, 30, len(d))
    ours = interpolate_ebv(curves, row, d)
    dm_exact = 5.0 * np.log10(d) + 10.0                   # what mwdust feeds the spline
    ref = np.empty_like(ours)
    for r in range(30):
        spline = interpolate.InterpolatedUnivariateSpline(DISTMODS, curves[r], k=1)
        ref[row == r] = spline(dm_exact[row == r])
    assert np.array_equal(ours, ref)                      # bit for bit
    assert np.isnan(interpolate_ebv(curves, np.array([-1]), np.array([1.0]))).all()
    # broadcasting: one line of sight per star, many samples
    two_d = interpolate_ebv(curves, row[:10, None], np.tile(d[:10, None], (1, 3)))
    assert np.array_equal(two_d, np.tile(ours[:10, None], (1, 3)))


def test_lazy_block_reading_equals_loaded(mwdust_case, monkeypatch):
    c = mwdust_case
    lazy = Combined19Map.from_dust_dir(c["dir"])
    loaded = Combined19Map.from_dust_dir(c["dir"], load=True)
    monkeypatch.setattr(Combined19Map, "READ_BLOCK_ROWS", 37)   # many blocks, ragged last one
    rows = np.random.default_rng(3).integers(0, lazy.n_pixels, 500)
    assert np.array_equal(lazy.curves(rows), c["curves"][rows])
    assert np.array_equal(loaded.curves(rows), c["curves"][rows])


def test_missing_map_says_how_to_get_it(tmp_path):
    with pytest.raises(StarfmInputError) as err:
        Combined19Map.from_dust_dir(tmp_path)
    msg = str(err.value)
    assert "zenodo.org/record/3566060/files/combine19.h5" in msg
    assert "DUST_DIR" in msg and "dust.dust_dir" in msg and str(tmp_path) in msg


def test_corrupt_or_wrong_map_is_a_clear_error(tmp_path):
    path = combined19_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2000))
    with pytest.raises(StarfmInputError, match="corrupt"):
        Combined19Map.from_dust_dir(tmp_path)
    with h5py.File(path, "w") as f:
        f["best_fit"] = np.zeros((3, 120))
    with pytest.raises(StarfmInputError, match="pixel_info"):
        Combined19Map.from_dust_dir(tmp_path)
    write_combined19(path, [16, 16], [0, 1], np.zeros((2, 120)))
    with h5py.File(path, "r+") as f:
        del f["best_fit"]
        f["best_fit"] = np.zeros((2, 100))
    with pytest.raises(StarfmInputError, match="shape"):
        Combined19Map.from_dust_dir(tmp_path)
    # a map truncated in the middle of /best_fit
    write_combined19(path, np.full(4000, 64), np.arange(4000), np.ones((4000, 120)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StarfmInputError, match="corrupt|truncated"):
        Combined19Map.from_dust_dir(tmp_path).curves(np.arange(4000))


def test_dust_dir_defaults_to_environment(tmp_path, monkeypatch):
    write_combined19(combined19_path(tmp_path), [1], [3], np.ones((1, 120)))
    monkeypatch.setenv("DUST_DIR", str(tmp_path))
    m = Combined19Map.from_dust_dir("")
    assert m.path == combined19_path(tmp_path)
    # nside 1, pixel 3 only: inside it E(B-V) = 1 at every distance, NaN elsewhere
    theta, phi = healpy.pix2ang(1, [3, 5], nest=True)
    ebv = m(np.degrees(phi), 90 - np.degrees(theta), 2.0)
    assert ebv[0] == 1.0 and np.isnan(ebv[1])


def test_a_level_without_pixels_is_skipped():
    """nside 16 and 64 but no 32 (mwdust raises IndexError there): the finest match still wins."""
    coarse = np.arange(12 * 16 ** 2)
    fine = np.arange(16)                                  # the 64-children of coarse pixels 0..3
    m = Combined19Map(np.r_[np.full(len(coarse), 16), np.full(16, 64)], np.r_[coarse, fine],
                      best_fit=np.ones((len(coarse) + 16, len(DISTMODS))))
    theta, phi = healpy.pix2ang(64, [5, 100], nest=True)  # 5: a fine pixel; 100: coarse 6
    pix = m.pixel_index(np.degrees(phi), 90 - np.degrees(theta))
    assert pix.tolist() == [len(coarse) + 5, 6]
