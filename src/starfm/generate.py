"""``starfm generate`` (parameters -> XP coefficients -> spectrum) and ``starfm inpaint`` (BP from
RP, RP from BP); ``starfm predict-merge`` lives with ``predict`` (``starfm.predict.merge``).

generate: the model's XP tokens given any of Teff, logg, [M/H], mass, age and E(B-V), turned into
coefficients for a star of magnitude G (tokens are coefficient / F_G; default G = 12), and sampled
on GaiaXPy's calibrate grid (336-1020 nm, 2 nm) through GaiaXPy's own bases
(``starfm.xp_flux.xp_design_matrix``: ``gaiaxpy.calibrate`` of the unit coefficient
vectors, so flux = coefficients @ M exactly). Uncertainties: the model's sigma per coefficient,
propagated to the flux as uncorrelated (sigma_flux^2 = sigma^2 @ M^2). The output is an XP table
(``*_coefficients``, ``*_coefficient_errors``, ``*_n_relevant_bases`` = 55, ``phot_g_mean_mag``)
that ``starfm predict`` and GaiaXPy read back, plus ``flux`` and ``flux_error`` (n, 343) in
W m^-2 nm^-1 and the grid as the ``wavelength_nm`` attribute.

inpaint: one band's coefficients predicted from the other's (tokens built as in ``predict``),
written as an XP table whose inpainted band is the prediction (its errors the model's sigma) and
whose other band is the observation; ``<band>_observed_coefficients`` keeps what Gaia measured of
the inpainted band (NaN where it has none), for comparison.
"""
from __future__ import annotations

import logging
import sys
from typing import Mapping

import numpy as np
from tqdm import tqdm

from starfm import tokens
from starfm.catalogue_io import CatalogueWriter, iter_xp_chunks, read_table_any
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.errors import StarfmInputError
from starfm.tokenise import g_flux, tokenise

log = logging.getLogger("starfm.generate")

N = tokens.N_XP
# parameter name -> (token, transform from natural units to token units)
PARAMETERS = {"teff": ("teff", None), "logg": ("logg", None), "m_h": ("m_h", None),
              "alpha_m": ("alpha_m", None),
              "mass": ("mass", None), "age": ("ln_age", np.log), "ebv": ("ln_ebv", np.log)}
DEFAULT_G_MAG = 12.0


def wavelength_grid() -> np.ndarray:
    from starfm.extinction_curve import XP_WAVELENGTH_NM
    return np.asarray(XP_WAVELENGTH_NM, dtype=np.float64)


def sample_spectrum(coefficients: np.ndarray, errors: np.ndarray | None = None):
    """(n, 110) BP+RP coefficients (and errors) -> GaiaXPy flux (n, 343) and its sigma."""
    from starfm.xp_flux import xp_design_matrix
    m = xp_design_matrix(wavelength_grid())
    flux = np.nan_to_num(coefficients) @ m
    if errors is None:
        return flux, None
    return flux, np.sqrt(np.nan_to_num(errors) ** 2 @ m ** 2)


def generate(fm, params: Mapping, g_mag=None, batch_size: int = 4096) -> dict:
    """XP coefficients and sampled spectra for stars with the given parameters.

    ``params``: name -> array (or scalar) for any of teff [K], logg, m_h, alpha_m [dex],
    mass [Msun], age [Gyr], ebv [mag]; absent or NaN = not given; a parameter whose token the
    model never saw in training is an error. ``g_mag``: G of the stars (scale only;
    default 12). Returns the output columns (see the module docstring).
    """
    unknown = sorted(set(params) - set(PARAMETERS) - {"source_id", "g_mag", "phot_g_mean_mag"})
    if unknown:
        raise StarfmInputError(f"generate: unknown parameter(s) {unknown}; known {list(PARAMETERS)}")
    given = {k: np.atleast_1d(np.asarray(params[k], dtype=np.float64)) for k in PARAMETERS if k in params}
    if not given:
        raise StarfmInputError(f"generate: give at least one of {list(PARAMETERS)}")
    n = max(len(v) for v in given.values())
    bad = {k: len(v) for k, v in given.items() if len(v) not in (1, n)}
    if bad:
        raise StarfmInputError(f"generate: parameters of unequal length {bad} (expected {n})")
    values = np.full((n, len(tokens.VOCABULARY)), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, v in given.items():
            token, transform = PARAMETERS[name]
            values[:, tokens.TOKEN_INDEX[token]] = transform(v) if transform else v
    inputs = [PARAMETERS[k][0] for k in given]
    seen = set(getattr(fm, "tokens_seen", tokens.VOCABULARY))   # a stand-in model: all
    unseen = [k for k in given if PARAMETERS[k][0] not in seen]
    if unseen:   # e.g. mass for the library model: its embedding was never trained
        raise StarfmInputError(f"generate: the model never saw {unseen} in training; leave "
                               f"{'it' if len(unseen) == 1 else 'them'} out")
    mean, std = fm.predict(values, inputs=inputs, outputs=tokens.XP_BP + tokens.XP_RP,
                           batch_size=batch_size)
    G = np.broadcast_to(np.asarray(DEFAULT_G_MAG if g_mag is None else g_mag, np.float64), (n,)).copy()
    scale = g_flux(G)[:, None]
    coef, err = mean * scale, std * scale
    flux, flux_err = sample_spectrum(coef, err)
    sid = np.asarray(params.get("source_id", np.arange(n)), dtype=np.int64)
    out = {"source_id": np.broadcast_to(sid, (n,)).copy(), "phot_g_mean_mag": G}
    out.update({k: np.broadcast_to(v, (n,)).copy() for k, v in given.items()})
    for j, band in enumerate(("bp", "rp")):
        out[f"{band}_coefficients"] = coef[:, j * N:(j + 1) * N]
        out[f"{band}_coefficient_errors"] = err[:, j * N:(j + 1) * N].astype(np.float32)
        out[f"{band}_n_relevant_bases"] = np.where(np.isfinite(coef[:, j * N]), N, 0).astype(np.int16)
        out[f"{band}_n_parameters"] = out[f"{band}_n_relevant_bases"].copy()
    out["flux"], out["flux_error"] = flux, flux_err
    return out


def inpaint_chunk(fm, xp: dict, extra: dict, gaia, photometry, settings, source_band: str) -> dict:
    """One chunk of XP rows -> the XP table with the other band predicted from ``source_band``."""
    from starfm.predict import model_records, token_columns
    if source_band not in ("bp", "rp"):
        raise StarfmInputError(f"inpaint: --from must be bp or rp, not {source_band!r}")
    target = "rp" if source_band == "bp" else "bp"
    cols, used, flag = token_columns(xp, extra, gaia, photometry, settings)
    values, _ = tokenise(cols, model_records(fm, settings).cuts, missing_quality="pass")
    src = tokens.XP_BP if source_band == "bp" else tokens.XP_RP
    dst = tokens.XP_RP if source_band == "bp" else tokens.XP_BP
    mean, std = fm.predict(values, inputs=src, outputs=dst, batch_size=settings.batch_size)
    scale = g_flux(used["phot_g_mean_mag"])[:, None]
    has_source = np.isfinite(values[:, tokens.index(src)]).any(1)
    out = {"source_id": xp["source_id"], "phot_g_mean_mag": used["phot_g_mean_mag"]}
    for band in ("bp", "rp"):
        if band == target:
            out[f"{band}_coefficients"] = mean * scale
            out[f"{band}_coefficient_errors"] = (std * scale).astype(np.float32)
            n_rel = np.where(has_source, N, 0)
        else:
            out[f"{band}_coefficients"] = xp[f"{band}_coefficients"]
            out[f"{band}_coefficient_errors"] = xp[f"{band}_coefficient_errors"]
            n_rel = xp[f"{band}_n_relevant_bases"]
        out[f"{band}_n_relevant_bases"] = np.asarray(n_rel, np.int16)
    out[f"{target}_observed_coefficients"] = xp[f"{target}_coefficients"]
    out["flag"] = flag | np.where(has_source, 0, 8).astype(np.int32)
    return out


def inpaint(model, xp, out, source_band: str, gaia_source=None, settings=None, fm=None) -> int:
    """Inpaint every source of the XP file ``xp`` into ``out`` (.h5/.hdf5/.fits); rows written."""
    from starfm.predict import GAIA_COLUMNS, PredictSettings, SideTable
    settings = settings or PredictSettings()
    target = "rp" if source_band == "bp" else "bp"
    writer = CatalogueWriter(out, meta={"model": str(model), "xp": str(xp),
                                        "inpainted_band": target, "from_band": source_band})
    if fm is None:
        from starfm.inference import StarFM
        fm = StarFM.load(model, device=settings.device)
    gaia = SideTable(gaia_source, "gaia_source", {c: (c,) for c in GAIA_COLUMNS}) if gaia_source else None
    bar = tqdm(desc="inpaint", unit="star", file=sys.stderr, disable=not settings.progress or None)
    with writer:
        for xp_cols, extra in iter_xp_chunks(xp, settings.chunk_rows):
            if len(xp_cols["source_id"]):
                writer.write(inpaint_chunk(fm, xp_cols, extra, gaia, None, settings, source_band))
                bar.update(len(xp_cols["source_id"]))
        if writer.n == 0:
            raise StarfmInputError(f"{xp}: the XP table is empty")
    bar.close()
    log.info("wrote %s: %s inpainted from %s for %d sources", out, target, source_band, writer.n)
    return writer.n


# ---------------------------------------------------------------------------- command lines
@run_cli
def cli_generate(argv=None) -> int:
    parser = stage_parser(
        "generate", "XP coefficients and the sampled spectrum (336-1020 nm, GaiaXPy) with "
        "uncertainties, from stellar parameters: one star from the options, or a table.")
    parser.add_argument("--model", required=True, help="model.pt of the train stage")
    parser.add_argument("--params", default=None,
                        help="table of parameters (columns among teff, logg, m_h, alpha_m, mass, age [Gyr], "
                             "ebv, optional g_mag, source_id); else the options below")
    for name, unit in (("teff", "K"), ("logg", "dex"), ("m-h", "dex"), ("alpha-m", "dex"), ("mass", "Msun"),
                       ("age", "Gyr"), ("ebv", "mag")):
        parser.add_argument(f"--{name}", type=float, default=None, help=f"{name} [{unit}]")
    parser.add_argument("--g-mag", type=float, default=DEFAULT_G_MAG, help="G of the star(s) (scale)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--out", required=True, help="output (.h5/.hdf5 or .fits)")
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    from starfm.inference import StarFM
    writer = CatalogueWriter(args.out, meta={"model": args.model, "wavelength_nm": wavelength_grid().tolist(),
                                             "flux_unit": "W m^-2 nm^-1"})
    if args.params:
        table = read_table_any(args.params, "parameter")
        params = {k: v for k, v in table.items() if k in PARAMETERS or k == "source_id"}
        g_mag = table.get("g_mag", table.get("phot_g_mean_mag", args.g_mag))
    else:
        params = {k: getattr(args, k) for k in PARAMETERS if getattr(args, k) is not None}
        g_mag = args.g_mag
    fm = StarFM.load(args.model, device=args.device)
    result = generate(fm, params, g_mag)
    with writer:
        writer.write(result)
    log.info("wrote %s: %d generated spectra", args.out, len(result["source_id"]))
    return 0


@run_cli
def cli_inpaint(argv=None) -> int:
    from starfm.predict import PredictSettings
    parser = stage_parser("inpaint", "Predict one XP band's coefficients from the other's "
                          "(RP from BP with --from bp, BP from RP with --from rp).")
    parser.add_argument("--model", required=True, help="model.pt of the train stage")
    parser.add_argument("--xp", required=True, help="XP continuous-spectrum table (any format)")
    parser.add_argument("--from", dest="source_band", required=True, choices=("bp", "rp"),
                        help="the observed band used as input")
    parser.add_argument("--gaia-source", default=None, help="optional gaia_source table (G)")
    parser.add_argument("--out", required=True, help="output XP table (.h5/.hdf5 or .fits)")
    parser.add_argument("--settings", default=None, help="JSON of PredictSettings")
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    inpaint(args.model, args.xp, args.out, args.source_band, args.gaia_source,
            PredictSettings.from_json(args.settings))
    return 0


__all__ = ["generate", "inpaint", "sample_spectrum", "wavelength_grid"]
