"""The mock survey's dust map: a synthetic 3-D map written in mwdust's Combined19 format.

An exponential dust disk (scale length 3 kpc, height 0.12 kpc, 0.4 mag/kpc E(B-V)_SFD at the
Sun, per-pixel log-normal clumpiness), integrated along every pixel's sightline to give a
non-decreasing E(B-V)_SFD on the 120 distance moduli linspace(4, 18.875, 120), on nested HEALPix
nside 64 with nside 128 at |b| < 5 deg. Stars' true E(B-V) is this map evaluated at their true
distance by :class:`starfm.dust_map.Combined19Map` (the reader every stage uses, bit-identical to
``mwdust.Combined19``).
"""
from __future__ import annotations

import os

import numpy as np

from starfm.dust_map import DISTMODS, Combined19Map, write_combined19


def make_dust_map(path: str | os.PathLike, rng: np.random.Generator) -> Combined19Map:
    """Build the map, write it to ``path`` (``combine19.h5``) and return it, loaded."""
    nside, hpix, best_fit = build_dust_map(rng)
    write_combined19(path, nside, hpix, best_fit)
    return Combined19Map(nside, hpix, best_fit=best_fit, path=path)


def build_dust_map(rng: np.random.Generator, fine_lat_deg: float = 5.0):
    """Synthetic Combined19 map: returns (nside, healpix_index, best_fit (n_pix, 120) E(B-V)_SFD).

    nside 64 everywhere except pixels whose centre has |b| < ``fine_lat_deg``, split into their
    four nested nside 128 children. E(B-V) integrates an exponential dust disk along the sightline.
    """
    import healpy

    coarse = np.arange(healpy.nside2npix(64))
    theta, _ = healpy.pix2ang(64, coarse, nest=True)
    split = np.abs(90.0 - np.degrees(theta)) < fine_lat_deg
    fine = (coarse[split][:, None] * 4 + np.arange(4)[None, :]).ravel()   # nested children
    nside = np.concatenate([np.full((~split).sum(), 64), np.full(len(fine), 128)]).astype("uint32")
    hpix = np.concatenate([coarse[~split], fine]).astype("uint64")
    theta, phi = np.empty(len(hpix)), np.empty(len(hpix))
    for ns in (64, 128):
        sel = nside == ns
        theta[sel], phi[sel] = healpy.pix2ang(ns, hpix[sel].astype(np.int64), nest=True)
    glon, glat = np.degrees(phi), 90.0 - np.degrees(theta)
    dist_nodes = 10 ** ((DISTMODS - 10.0) / 5.0)                         # kpc
    best_fit = np.empty((len(hpix), len(DISTMODS)))
    clump = np.exp(rng.normal(0.0, 0.3, len(hpix)))                       # angular structure
    # integrate (midpoint rule) on 2 sub-steps per distance-modulus interval (a 6 % step in
    # distance: the density is smooth on that scale) and 16 from the Sun to the first node
    sub = np.concatenate([np.linspace(0, dist_nodes[0], 17)[1:]]
                         + [np.linspace(a, b, 3)[1:] for a, b in zip(dist_nodes[:-1], dist_nodes[1:])])
    node_idx = np.concatenate([[15], 16 + 2 * np.arange(1, len(DISTMODS)) - 1])
    for start in range(0, len(hpix), 8192):
        sl = slice(start, start + 8192)
        cl, sl_b = np.radians(glon[sl])[:, None], np.radians(glat[sl])[:, None]
        edges = np.concatenate([[0.0], sub])
        rho = _dust_density(0.5 * (edges[1:] + edges[:-1])[None, :], cl, sl_b)
        ds = np.diff(edges)[None, :]
        cum = np.cumsum(rho * ds, axis=1)
        best_fit[sl] = cum[:, node_idx] * clump[sl, None]
    return nside, hpix, best_fit


def _dust_density(s_kpc, l_rad, b_rad, r0=8.2, scale_length=3.0, scale_height=0.12, local=0.4):
    """E(B-V)_SFD per kpc of an exponential dust disk, truncated beyond R = 18 kpc."""
    x = r0 - s_kpc * np.cos(b_rad) * np.cos(l_rad)
    y = s_kpc * np.cos(b_rad) * np.sin(l_rad)
    z = s_kpc * np.sin(b_rad) + 0.02                                      # Sun 20 pc above the plane
    radius = np.hypot(x, y)
    rho = local * np.exp(-(radius - r0) / scale_length - np.abs(z) / scale_height)
    return np.where(radius < 18.0, rho, 0.0)
