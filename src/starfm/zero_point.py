"""Gaia DR3 parallax zero-point (SPEC §4): Lindegren et al. (2021) plus the paper's extra term.

``zero_point = L21(G, nu_eff | pseudocolour, ecl_lat) + extra * clip(G - 13, 0, 4)`` [mas] and
``parallax_corrected = parallax - zero_point``. L21 comes from the ``gaiadr3-zeropoint`` package
(``zpt.get_zpt``, called once on arrays) and exists only for 5-parameter (astrometric_params_solved
31, colour = nu_eff_used_in_astrometry) and 6-parameter (95, colour = pseudocolour) solutions;
every other solution (3: 2-parameter) gets NaN.

Outside the calibrated range (6 < G < 21, 1.1 < nu_eff < 1.9 for 5p, 1.24 < pseudocolour < 1.72
for 6p) ``get_zpt`` only warns and then (checked against its code): holds the G interpolation at
the table ends (G = 6 or 21), saturates the 6p colour terms at 1.24 / 1.72, but extrapolates the
5p colour terms linearly in nu_eff without bound. Our fallback, ``out_of_range="clip"`` (default),
clips the inputs to those ranges first: identical to the package for G and pseudocolour, and for
nu_eff it replaces the unbounded extrapolation by the value at the edge. ``"nan"`` instead gives
NaN outside the range (the package's ``_warnings=False`` behaviour). A NaN in any input that the
star's solution uses (G, ecl_lat, and nu_eff for 5p or pseudocolour for 6p) gives NaN. Counts of
each case are logged and stored as attributes of the output.
"""
from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path

import numpy as np

from dataclasses import dataclass

from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.settings import add_settings_argument, parse_settings
from starfm.errors import StarfmInputError, require_columns, require_rows
from starfm.tables import read_table, write_table

log = logging.getLogger("starfm.zero_point")

INPUT_COLUMNS = ["source_id", "parallax", "phot_g_mean_mag", "nu_eff_used_in_astrometry",
                 "pseudocolour", "ecl_lat", "astrometric_params_solved"]
SOLVED_5P, SOLVED_6P = 31, 95
G_RANGE = (6.0, 21.0)
NU_EFF_RANGE = (1.1, 1.9)          # 5-parameter validity (Lindegren et al. 2021)
PSEUDOCOLOUR_RANGE = (1.24, 1.72)  # 6-parameter validity
EXTRA_G_PIVOT, EXTRA_G_SPAN = 13.0, 4.0

_zpt = None


def _zpt_module():
    """The third-party ``zero_point.zpt`` with its tables loaded (once per process).

    Imported by absolute name through importlib; if ``zero_point`` resolves to this very file
    (``src/starfm`` on ``sys.path``, e.g. running the file as a script) say so instead of failing
    obscurely.
    """
    global _zpt
    if _zpt is None:
        try:
            module = importlib.import_module("zero_point.zpt")
        except ImportError as exc:
            raise ImportError("the gaiadr3-zeropoint package (top-level module 'zero_point') is "
                              f"needed: pip install gaiadr3-zeropoint ({exc})") from exc
        if not hasattr(module, "get_zpt") or Path(module.__file__).resolve() == Path(__file__).resolve():
            raise ImportError(f"'zero_point.zpt' resolved to {module.__file__}, not gaiadr3-zeropoint; "
                              "is src/starfm on sys.path? run as 'python -m starfm zero-point'")
        module.load_tables()
        _zpt = module
    return _zpt


def lindegren_zero_point(g: np.ndarray, nu_eff: np.ndarray, pseudocolour: np.ndarray,
                         ecl_lat: np.ndarray, solved: np.ndarray, out_of_range: str = "clip"
                         ) -> tuple[np.ndarray, dict]:
    """L21 zero-point [mas] for arrays of sources; NaN where not 5p/6p or an input is NaN."""
    if out_of_range not in ("clip", "nan"):
        raise ValueError(f"out_of_range must be 'clip' or 'nan', not {out_of_range!r}")
    g = np.asarray(g, dtype=float)
    nu_eff = np.asarray(nu_eff, dtype=float)
    pseudocolour = np.asarray(pseudocolour, dtype=float)
    ecl_lat = np.asarray(ecl_lat, dtype=float)
    solved = np.asarray(solved)
    is5 = solved == SOLVED_5P
    is6 = solved == SOLVED_6P
    colour = np.where(is5, nu_eff, pseudocolour)
    finite = np.isfinite(g) & np.isfinite(ecl_lat) & np.isfinite(colour)
    g_out = finite & ((g <= G_RANGE[0]) | (g >= G_RANGE[1]))
    nu_out = finite & is5 & ((nu_eff <= NU_EFF_RANGE[0]) | (nu_eff >= NU_EFF_RANGE[1]))
    pc_out = finite & is6 & ((pseudocolour <= PSEUDOCOLOUR_RANGE[0]) | (pseudocolour >= PSEUDOCOLOUR_RANGE[1]))
    use = (is5 | is6) & finite
    if out_of_range == "nan":
        use &= ~(g_out | nu_out | pc_out)
    stats = {"n_5p": int(is5.sum()), "n_6p": int(is6.sum()),
             "n_other_solution": int((~is5 & ~is6).sum()),
             "n_nan_input": int(((is5 | is6) & ~finite).sum()),
             "n_g_out_of_range": int(g_out[is5 | is6].sum()), "n_nu_eff_out_of_range": int(nu_out.sum()),
             "n_pseudocolour_out_of_range": int(pc_out.sum()), "out_of_range": out_of_range}

    zero_point = np.full(len(g), np.nan)
    if use.any():
        # clipping is a no-op for in-range values; for out-of-range ones it is the fallback
        g_in = np.clip(g[use], *G_RANGE)
        nu_in = np.clip(nu_eff[use], *NU_EFF_RANGE)
        pc_in = np.clip(pseudocolour[use], *PSEUDOCOLOUR_RANGE)
        # get_zpt ignores the colour a solution does not use, but must not see NaN there either
        nu_in = np.where(is5[use], nu_in, 1.5)
        pc_in = np.where(is6[use], pc_in, 1.5)
        with warnings.catch_warnings():
            # the range warnings concern values at the (clipped) edges; counted above instead
            warnings.simplefilter("ignore", UserWarning)
            zero_point[use] = _zpt_module().get_zpt(g_in, nu_in, pc_in, ecl_lat[use],
                                                    solved[use].astype(float))
    return zero_point, stats


def extra_term(g: np.ndarray, extra_mas: float) -> np.ndarray:
    """The paper's additional zero-point: extra_mas * clip(G - 13, 0, 4) [mas]."""
    return extra_mas * np.clip(np.asarray(g, dtype=float) - EXTRA_G_PIVOT, 0.0, EXTRA_G_SPAN)


def correct_parallaxes(gaia: dict[str, np.ndarray], extra_mas: float = 0.005,
                       out_of_range: str = "clip", source: str = "gaia_source table"
                       ) -> tuple[dict[str, np.ndarray], dict]:
    """``source_id``, ``zero_point`` and ``parallax_corrected`` for every row of ``gaia``."""
    require_columns(gaia.keys(), INPUT_COLUMNS, source)
    n = len(gaia["source_id"])
    require_rows(n, source)
    for name in ("phot_g_mean_mag", "ecl_lat"):
        if not np.isfinite(np.asarray(gaia[name], dtype=float)).any():
            raise StarfmInputError(f"{source}: column {name} is all NaN")
    zp, stats = lindegren_zero_point(gaia["phot_g_mean_mag"], gaia["nu_eff_used_in_astrometry"],
                                     gaia["pseudocolour"], gaia["ecl_lat"],
                                     gaia["astrometric_params_solved"], out_of_range)
    zp = zp + extra_term(gaia["phot_g_mean_mag"], extra_mas)
    out = {"source_id": np.asarray(gaia["source_id"]).astype(np.int64), "zero_point": zp,
           "parallax_corrected": np.asarray(gaia["parallax"], dtype=float) - zp}
    stats.update(n_rows=n, n_zero_point=int(np.isfinite(zp).sum()), extra_term_mas=float(extra_mas))
    log.info("%d sources: %d 5-parameter, %d 6-parameter, %d other solutions (NaN)",
             n, stats["n_5p"], stats["n_6p"], stats["n_other_solution"])
    log.info("NaN input for %d 5p/6p sources; out of the calibrated range (%s): G %d, nu_eff %d, "
             "pseudocolour %d", stats["n_nan_input"], out_of_range, stats["n_g_out_of_range"],
             stats["n_nu_eff_out_of_range"], stats["n_pseudocolour_out_of_range"])
    if stats["n_zero_point"]:
        log.info("zero-point median %.4f mas (%d finite)", np.nanmedian(zp), stats["n_zero_point"])
    return out, stats


@dataclass(frozen=True)
class ZeroPointSettings:
    """config.yaml ``zero_point:`` (defaults = the schema's)."""

    SECTION = "zero_point"
    extra_term_mas: float = 0.005     # the paper's term: extra_term_mas * clip(G - 13, 0, 4) mas
    out_of_range: str = "clip"        # inputs outside the recipe's range: clip, or NaN


def make_parallax(gaia_source: str | Path, out: str | Path, extra_mas: float = 0.005,
                  out_of_range: str = "clip") -> dict:
    """The stage: read gaia_source.h5, write parallax.h5 (atomically)."""
    gaia = read_table(gaia_source, INPUT_COLUMNS)
    table, stats = correct_parallaxes(gaia, extra_mas, out_of_range, source=str(gaia_source))
    write_table(out, table, attrs=stats)
    log.info("wrote %s", out)
    return stats


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("zero-point", "Gaia DR3 parallax zero-point: Lindegren et al. (2021) for "
                          "5/6-parameter solutions (gaiadr3-zeropoint) plus EXTRA*clip(G-13, 0, 4) mas; "
                          "parallax_corrected = parallax - zero_point. Outside 6<G<21, "
                          "1.1<nu_eff<1.9 (5p), 1.24<pseudocolour<1.72 (6p) the inputs are clipped "
                          "to the range (out_of_range: clip) or give NaN (nan).")
    parser.add_argument("--gaia-source", required=True, help="gaia_source.h5 from the gaia-source stage")
    parser.add_argument("--out", required=True, help="output parallax.h5")
    add_settings_argument(parser, ZeroPointSettings)
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    settings = parse_settings(ZeroPointSettings, args.settings)
    make_parallax(args.gaia_source, args.out, settings.extra_term_mas, settings.out_of_range)
    return 0
