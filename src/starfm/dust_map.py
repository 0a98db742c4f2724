"""The Combined19 3-D dust map: mwdust's file format, and a vectorised evaluator.

``combined19/combine19.h5`` holds ``/pixel_info`` (structured: ``nside`` uint32,
``healpix_index`` uint64, nested HEALPix, several resolutions) and ``/best_fit``
(n_pixels x 120 float64, E(B-V) on the SFD scale at distance moduli
``linspace(4, 18.875, 120)``), as written by mwdust's ``combine_dustmaps19``.
"""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from starfm.errors import StarfmInputError
from starfm.tables import atomic_path

DISTMODS = np.linspace(4.0, 18.875, 120)
PIXEL_INFO_DTYPE = np.dtype([("nside", "uint32"), ("healpix_index", "uint64")])


def combined19_path(dust_dir: str | os.PathLike) -> Path:
    """Where mwdust looks for the map under ``DUST_DIR``."""
    return Path(dust_dir) / "combined19" / "combine19.h5"


def write_combined19(path: str | os.PathLike, nside: np.ndarray, healpix_index: np.ndarray,
                     best_fit: np.ndarray) -> None:
    """Write a map in mwdust's exact Combined19 layout (atomically)."""
    nside = np.asarray(nside)
    healpix_index = np.asarray(healpix_index)
    best_fit = np.asarray(best_fit, dtype="float64")
    if best_fit.shape != (len(nside), len(DISTMODS)) or len(healpix_index) != len(nside):
        raise ValueError(f"best_fit must be ({len(nside)}, {len(DISTMODS)}), got {best_fit.shape}")
    pix_info = np.empty(len(nside), dtype=PIXEL_INFO_DTYPE)
    pix_info["nside"] = nside
    pix_info["healpix_index"] = healpix_index
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("pixel_info", data=pix_info)
            f.create_dataset("best_fit", data=best_fit)


# ---------------------------------------------------------------- HEALPix (nested) pixel lookup

COMBINED19_URL = "https://zenodo.org/record/3566060/files/combine19.h5"
_DEGTORAD = np.pi / 180.0
_STEP = DISTMODS[1] - DISTMODS[0]
# FITPACK's k=1 B-spline weights use 1/(t[l+1]-t[l]); the grid step 0.125 is exact in binary,
# so that factor is exactly 8 for every interval and one scalar reproduces it bit for bit.
assert np.array_equal(DISTMODS, 4.0 + 0.125 * np.arange(120)) and 1.0 / _STEP == 8.0
_INV_STEP = 1.0 / _STEP
_LAST_INTERVAL = len(DISTMODS) - 2


def _interleave_bits(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Nested index within a base pixel: bit i of x to bit 2i, bit i of y to bit 2i+1."""
    out = np.zeros(x.shape, dtype=np.int64)
    for bit in range(29):
        if not (np.any(x >> bit) or np.any(y >> bit)):
            break
        out |= ((x >> bit) & 1) << (2 * bit)
        out |= ((y >> bit) & 1) << (2 * bit + 1)
    return out


def ang2pix_nest(nside: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Nested HEALPix pixel of colatitude ``theta`` and longitude ``phi`` (radians).

    A vectorised transcription of the arithmetic of mwdust's ``util.healpix.ang2pix(nest=True)``
    (its C code follows Koike's port of Gorski et al. 2005): the same floating-point operations
    in the same order, so points on pixel edges land in the same pixel as in mwdust, which is
    not always healpy's choice. Longitudes outside [0, 2pi) wrap, but as in mwdust a negative
    longitude in the polar caps (|b| > 41.8 deg) lands in another pixel than healpy's (GLON
    from allStar is in [0, 360)). Non-finite input gives an undefined pixel in mwdust; here -1.
    """
    theta = np.atleast_1d(np.asarray(theta, dtype=np.float64))
    phi = np.atleast_1d(np.asarray(phi, dtype=np.float64))
    theta, phi = np.broadcast_arrays(theta, phi)
    finite = np.isfinite(theta) & np.isfinite(phi)
    theta = np.where(finite, theta, 0.0)
    a = np.where(finite, phi, 0.0)
    with np.errstate(invalid="ignore"):
        z = np.cos(theta)
        # za2tu: equatorial belt |z| <= 2/3, polar caps elsewhere (sigma(z) odd in z)
        equatorial = np.abs(z) <= 2.0 / 3.0
        sigma = 2.0 - np.sqrt(3.0 * (1.0 - np.abs(z)))
        sigma = np.where(z < 0, -sigma, sigma)
        t = np.where(equatorial, a,
                     a - (np.abs(sigma) - 1.0) * (np.fmod(a, np.pi / 2.0) - np.pi / 4.0))
        u = np.where(equatorial, 3.0 * (np.pi / 8.0) * z, (np.pi / 4.0) * sigma)
    # tu2fpq: to base pixel f and coordinates (p, q) inside it
    t = t / (np.pi / 4.0)
    u = u / (np.pi / 4.0)
    t = np.where(t < 0, 8.0 - np.fmod(-t, 8.0), np.fmod(t, 8.0))
    t = t + -4.0
    u = u + 5.0
    pp = np.clip((u + t) / 2.0, 0.0, 5.0)
    big_p = np.floor(pp).astype(np.int64)
    qq = (u - t) / 2.0
    qq = np.where(qq < 3.0 - big_p, 3.0 - big_p, np.where(qq > 6.0 - big_p, 6.0 - big_p, qq))
    big_q = np.floor(qq).astype(np.int64)
    v = 5 - (big_p + big_q)
    clipped = v < 0
    f = np.where(clipped, 0, 4 * v + np.fmod((big_p - big_q + 4) >> 1, 4))
    p = np.where(clipped, 1.0, np.fmod(pp, 1.0))
    q = np.where(clipped, 1.0, np.fmod(qq, 1.0))
    # tu2fxy + fxy2nest
    x = np.clip(np.floor(nside * p), 0, nside - 1).astype(np.int64)
    y = np.clip(np.floor(nside * q), 0, nside - 1).astype(np.int64)
    pix = f * nside * nside + _interleave_bits(x, y)
    return np.where(finite, pix, -1)


# ---------------------------------------------------------------- distance interpolation

def interpolate_ebv(curves: np.ndarray, row: np.ndarray, distance_kpc: np.ndarray) -> np.ndarray:
    """E(B-V) at ``distance_kpc`` along line of sight ``curves[row]`` (``row`` -1: NaN).

    ``curves`` is (n_rows, 120) E(B-V) at :data:`DISTMODS`; ``row`` broadcasts against
    ``distance_kpc`` (e.g. shape (n_stars, 1) against (n_stars, n_samples)). This is mwdust's
    k=1 ``InterpolatedUnivariateSpline`` evaluated by FITPACK's ``splev`` (ext=0), written out:
    dm = 5 log10(d) + 10; interval l with t[l] <= dm < t[l+1] (first/last interval outside the
    grid: linear extrapolation); value c[l]*(f*(t[l+1]-dm)) + c[l+1]*(f*(dm-t[l])), f = 1/0.125.
    The result is bit-identical to mwdust's (why: the note after this function).
    """
    curves = np.ascontiguousarray(curves, dtype=np.float64)
    if curves.ndim != 2 or curves.shape[1] != len(DISTMODS):
        raise ValueError(f"curves must be (n, {len(DISTMODS)}), got {curves.shape}")
    row = np.asarray(row, dtype=np.intp)
    distance = np.asarray(distance_kpc, dtype=np.float64)
    shape = np.broadcast_shapes(row.shape, distance.shape)
    if np.any(row < 0):          # outside the map: an appended all-NaN line of sight (a copy;
        # callers evaluating many chunks use Combined19Map.lines_of_sight, which has it already)
        curves = np.concatenate([curves, np.full((1, len(DISTMODS)), np.nan)])
        row = np.where(row < 0, len(curves) - 1, row)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.log10(np.broadcast_to(distance, shape))
    g *= 5.0
    g += 10.0                    # g = dm, exactly mwdust's 5.*numpy.log10(ds)+10.
    g -= DISTMODS[0]
    g *= _INV_STEP               # g = 8 (dm - 4): position on the grid, exact for dm >= 2
    rare = g <= -16.0            # dm <= 2 (d <= 25 pc) or d == 0: evaluated literally below
    k = np.floor(g)
    np.fmax(k, 0.0, out=k)       # NaN -> 0 (the result stays NaN through g)
    np.fmin(k, float(_LAST_INTERVAL), out=k)
    flat = k.astype(np.intp)
    flat += row * len(DISTMODS)
    values = curves.ravel()
    ebv = values[flat]
    flat += 1
    upper = values[flat]
    del flat
    g -= k                       # weight of c[l+1]: 8 (dm - t[l])
    upper *= g
    np.subtract(1.0, g, out=k)   # weight of c[l]: 8 (t[l+1] - dm)
    ebv *= k
    ebv += upper
    if rare.any():
        ebv[rare] = _interpolate_literal(curves, np.broadcast_to(row, shape)[rare],
                                         np.broadcast_to(distance, shape)[rare])
    return ebv


def _interpolate_literal(curves: np.ndarray, row: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """FITPACK's k=1 evaluation, operation by operation (the slow path, for dm < 2)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        dm = 5.0 * np.log10(distance) + 10.0
        k = np.fmin(np.fmax(np.floor((dm - DISTMODS[0]) * _INV_STEP), 0.0), _LAST_INTERVAL)
        t_lo = DISTMODS[0] + k * _STEP
        t_hi = t_lo + _STEP
        idx = k.astype(np.intp) + row * len(DISTMODS)
        values = curves.ravel()
        return values[idx] * (_INV_STEP * (t_hi - dm)) + values[idx + 1] * (_INV_STEP * (dm - t_lo))


# Why the fast path is exact for dm > 2: dm - 4 is then exact (Sterbenz below 8; above, 4 is
# a multiple of ulp(dm)) and so is the product by 8, giving g. With t[l] = 4 + k/8, the true
# values 8 (dm - t[l]) and 8 (t[l+1] - dm) are multiples of 8 ulp(dm), fewer than 2^53 of
# them, so they are representable: g - k and 1 - (g - k), whose exact results they are, equal
# FITPACK's f*(x - t[l]) and f*(t[l+1] - x) bit for bit. Below dm = 2 (d < 25 pc) dm - 4 can
# round, so those points take the literal path. tests/test_dust_map.py checks this against
# scipy and mwdust, at and next to every knot.


# ---------------------------------------------------------------- the map

class Combined19Map:
    """The Combined19 map (Drimmel et al. 2003, Marshall et al. 2006, Green et al. 2019), vectorised.

    Same answers as ``mwdust.Combined19(filter=None)``: E(B-V) on the SFD scale, NaN where no
    pixel covers (l, b). Pixel lookup (:meth:`pixel_index`) and the interpolation in distance
    (:func:`interpolate_ebv`) are separate so a caller can look up each star once and then
    evaluate many distances. ``best_fit`` rows are read from the file only when asked for
    (:meth:`curves`), so the full (multi-GB) map never has to sit in memory.
    """

    READ_BLOCK_ROWS = 1 << 15      # rows of /best_fit per read (30 MB)

    def __init__(self, nside: np.ndarray, healpix_index: np.ndarray,
                 best_fit: np.ndarray | None = None, path: str | os.PathLike | None = None):
        self.nside = np.asarray(nside)
        self.healpix_index = np.asarray(healpix_index)
        self.path = None if path is None else Path(path)
        if best_fit is None and path is None:
            raise ValueError("give best_fit or the path of the file holding it")
        self._best_fit = None if best_fit is None else np.asarray(best_fit, dtype=np.float64)
        if len(self.nside) == 0:
            raise ValueError("the map has no pixels")
        max_nside, min_nside = int(self.nside.max()), int(self.nside.min())
        # mwdust's levels: max_nside, max_nside/2, ... down to min_nside, finest first
        n_levels = int(np.log2(max_nside // min_nside)) + 1
        self.nsides = [max_nside // 2 ** i for i in range(n_levels)]
        self._levels = []
        for ns in self.nsides:
            members = np.where(self.nside == ns)[0]
            # argsort of the file's own (uint64) column, as mwdust: same pick among duplicates
            order = np.argsort(self.healpix_index[members])
            self._levels.append((ns, members, self.healpix_index[members].astype(np.int64), order))

    @property
    def n_pixels(self) -> int:
        return len(self.nside)

    @classmethod
    def from_file(cls, path: str | os.PathLike, load: bool = False) -> "Combined19Map":
        """Open ``combine19.h5`` (pixel table read now; ``best_fit`` too when ``load``)."""
        path = Path(path)
        if not path.exists():
            raise StarfmInputError(
                f"{path}: Combined19 dust map not found. Download it from "
                f"{COMBINED19_URL} into <DUST_DIR>/combined19/combine19.h5 (or run "
                f"`python -c 'import mwdust; mwdust.Combined19()'` with DUST_DIR set), then point "
                f"the pipeline at DUST_DIR with the environment variable DUST_DIR or the config key "
                f"dust.dust_dir (command line: --dust-dir)")
        try:
            with h5py.File(path, "r") as f:
                if "pixel_info" not in f or "best_fit" not in f:
                    raise StarfmInputError(f"{path}: not a Combined19 map (datasets "
                                           f"{sorted(f.keys())}, expected pixel_info and best_fit); "
                                           f"re-download it from {COMBINED19_URL}")
                info = f["pixel_info"]
                names = info.dtype.names or ()
                if "nside" not in names or "healpix_index" not in names:
                    raise StarfmInputError(f"{path}: /pixel_info has fields {names}, expected "
                                           f"nside and healpix_index; re-download the map")
                shape = f["best_fit"].shape
                if len(shape) != 2 or shape != (info.shape[0], len(DISTMODS)):
                    raise StarfmInputError(f"{path}: /best_fit has shape {shape}, expected "
                                           f"({info.shape[0]}, {len(DISTMODS)}); the file is corrupt")
                pix = info[()]
                best_fit = f["best_fit"][()] if load else None
        except StarfmInputError:
            raise
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise StarfmInputError(f"{path}: cannot read the Combined19 map, the file is corrupt or "
                                   f"truncated ({type(exc).__name__}: {exc}); delete it and "
                                   f"re-download it from {COMBINED19_URL}") from exc
        if len(pix) == 0:
            raise StarfmInputError(f"{path}: the Combined19 map has no pixels")
        nside = pix["nside"]
        if np.any(nside < 1) or np.any(nside & (nside - 1)):
            raise StarfmInputError(f"{path}: /pixel_info nside values {np.unique(nside)[:10]} are not "
                                   f"all powers of two; the file is corrupt")
        return cls(nside, pix["healpix_index"], best_fit=best_fit, path=path)

    @classmethod
    def from_dust_dir(cls, dust_dir: str | os.PathLike | None = None, load: bool = False
                      ) -> "Combined19Map":
        """The map under ``dust_dir`` (default: $DUST_DIR, else ~/.mwdust, as mwdust)."""
        if not dust_dir:
            dust_dir = os.environ.get("DUST_DIR") or os.path.expanduser(os.path.join("~", ".mwdust"))
        return cls.from_file(combined19_path(dust_dir), load=load)

    def pixel_index(self, glon: np.ndarray, glat: np.ndarray) -> np.ndarray:
        """Row of ``best_fit`` for each (l, b) in degrees; -1 where no pixel covers it.

        mwdust's ``HierarchicalHealpixMap._lbIndx``: from the finest level to the coarsest,
        the first level holding the point's nested pixel wins. (mwdust raises IndexError when
        an intermediate level has no pixels at all; here such a level is simply skipped.)
        """
        glon = np.atleast_1d(np.asarray(glon, dtype=np.float64))
        glat = np.atleast_1d(np.asarray(glat, dtype=np.float64))
        glon, glat = np.broadcast_arrays(glon, glat)
        theta = (90.0 - glat) * _DEGTORAD
        phi = glon * _DEGTORAD
        found = np.full(glon.shape, -1, dtype=np.int64)
        todo = np.isfinite(theta) & np.isfinite(phi)
        for ns, members, hp_index, order in self._levels:
            if len(members) == 0 or not todo.any():
                continue
            tpix = ang2pix_nest(ns, theta[todo], phi[todo])
            pos = np.searchsorted(hp_index, tpix, sorter=order)
            beyond = pos == len(members)
            cand = order[np.where(beyond, 0, pos)]
            hit = (hp_index[cand] == tpix) & ~beyond
            where = np.flatnonzero(todo)
            found[where[hit]] = members[cand[hit]]
            todo[where[hit]] = False
        return found

    def curves(self, rows: np.ndarray) -> np.ndarray:
        """``best_fit[rows]`` (rows >= 0), read from the file in blocks if not loaded."""
        rows = np.asarray(rows, dtype=np.int64)
        if self._best_fit is not None:
            return self._best_fit[rows]
        out = np.empty((len(rows), len(DISTMODS)), dtype=np.float64)
        if len(rows) == 0:
            return out
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        block = self.READ_BLOCK_ROWS
        try:
            with h5py.File(self.path, "r") as f:
                ds = f["best_fit"]
                starts = np.unique(sorted_rows // block) * block
                for start in starts:
                    lo, hi = np.searchsorted(sorted_rows, [start, start + block])
                    chunk = ds[start:min(start + block, ds.shape[0])]
                    out[order[lo:hi]] = chunk[sorted_rows[lo:hi] - start]
        except (OSError, KeyError, ValueError) as exc:
            raise StarfmInputError(f"{self.path}: cannot read /best_fit, the file is corrupt or "
                                   f"truncated ({type(exc).__name__}: {exc}); delete it and "
                                   f"re-download it from {COMBINED19_URL}") from exc
        return out

    def lines_of_sight(self, glon, glat) -> tuple[np.ndarray, np.ndarray]:
        """The curves (l, b) need, compactly: ``(curves, row)`` for :func:`interpolate_ebv`.

        ``curves`` holds each distinct pixel once plus a last all-NaN row, which ``row`` points
        at for (l, b) outside the map; so every later evaluation is a plain gather.
        """
        pix = self.pixel_index(glon, glat)
        covered = pix >= 0
        unique, inverse = np.unique(pix[covered], return_inverse=True)
        curves = np.concatenate([self.curves(unique), np.full((1, len(DISTMODS)), np.nan)])
        row = np.full(pix.shape, len(unique), dtype=np.intp)
        row[covered] = inverse.ravel()
        return curves, row

    def __call__(self, glon, glat, distance_kpc) -> np.ndarray:
        """E(B-V) at (l, b, d) [deg, deg, kpc], like ``mwdust.Combined19()(l, b, d)``.

        Arrays broadcast (one (l, b) with many d, as mwdust's tiling). NaN outside the map.
        """
        glon, glat, distance_kpc = np.broadcast_arrays(
            np.atleast_1d(np.asarray(glon, dtype=np.float64)),
            np.atleast_1d(np.asarray(glat, dtype=np.float64)),
            np.atleast_1d(np.asarray(distance_kpc, dtype=np.float64)))
        curves, row = self.lines_of_sight(glon, glat)
        return interpolate_ebv(curves, row, distance_kpc)
