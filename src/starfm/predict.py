"""``starfm predict``: stellar parameters for anyone's Gaia XP spectra, streamed in chunks.

``python -m starfm predict --model results/model/model.pt --xp FILE [--gaia-source FILE]
[--photometry FILE] --out FILE [--settings JSON]``

Reads an XP table in any format ``starfm.catalogue_io`` reads (archive CSV/ECSV/FITS/VOTable,
DataLink zips, per-coefficient columns, ``xp_continuous.h5``, ``.npz``), joins on ``source_id``
the optional gaia_source columns (G, BP-RP, excess factor, RUWE, parallax and what its Lindegren+21
zero point needs: ``nu_eff_used_in_astrometry``, ``pseudocolour``, ``ecl_lat``,
``astrometric_params_solved``; or a ``parallax_corrected`` column) and 2MASS J, H, K (``j``/``j_m``,
``j_err``/``j_msigcom``, ... ``ks_m``), builds the tokens with :func:`starfm.tokenise.tokenise` -
the very function assembly trains on - and asks the model (:class:`starfm.inference.StarFM`).

One output row per input source (a source split over two rows of a chunk, BP in one and RP in
the other, becomes one row; repeats further apart than ``chunk_rows`` are not merged - archive
files hold each source once): ``mass`` [Msun],
``age`` [Gyr], ``teff`` [K], ``logg``, ``m_h``, ``alpha_m`` [dex], ``ebv`` [mag, the Combined19/SFD scale of
training], ``distance`` [kpc], each with ``<name>_err`` (the model's sigma; age, ebv and
distance by the delta method from ln age, ln E(B-V) and the pseudo-luminosity); the inputs used
(``phot_g_mean_mag`` - Gaia's or synthesised -, ``bp_rp``, ``parallax``, ``parallax_corrected``,
``ruwe``, ``j``, ``h``, ``k``, ``n_tokens``) and ``flag`` (bits, :data:`FLAGS`).

Where G is absent the XP coefficients are normalised with the G synthesised from the spectrum
itself (Gaia DR3 Vega photometry of GaiaXPy: the sampling vectors and zero points
``gaiaxpy.generate(..., PhotometricSystem.Gaia_DR3_Vega)`` uses, applied as one matrix product;
flag 2). Quality columns that are unknown (BP-RP range, excess factor, RUWE) skip their check
(flag 4). Missing parallax or 2MASS just mean fewer tokens.

``distance`` = 10**(G/5) / L_pred [kpc] with L_pred the pseudo-luminosity the model predicts from
all its inputs: where a good parallax is given it dominates, elsewhere it is the spectrophotometric
distance.

A model predicts under what it was trained on (``model.pt`` key ``training``,
:func:`model_records`): its training cuts (``PredictSettings.cuts`` may only narrow them), only
input tokens it saw in training (others dropped, flag 512), outputs it had training data for
(others NaN, flag 256), and a star outside the training giants' coverage gets flag 1024.
``starfm predict-merge`` (:func:`merge`) concatenates per-file predictions into one catalogue.
"""
from __future__ import annotations

import dataclasses
import logging
import sys
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from tqdm import tqdm

from starfm import tokens
from starfm.catalogue_io import CatalogueWriter, iter_xp_chunks, read_columns, read_table_any
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.errors import StarfmInputError
from starfm.tables import match_rows
from starfm.settings import parse_settings
from starfm.tokenise import CutSettings, tokenise, validity
from starfm.xp_flux import synthetic_photometry
from starfm.dataset import COVERAGE_OUTPUTS  # the predictions the OOD test (flag 1024) checks

log = logging.getLogger("starfm.predict")

# output name -> (token, kind of conversion)
OUTPUTS = {"mass": "mass", "age": "ln_age", "teff": "teff", "logg": "logg", "m_h": "m_h",
           "alpha_m": "alpha_m", "ebv": "ln_ebv", "distance": "pseudo_luminosity"}
UNITS = {"mass": "Msun", "age": "Gyr", "teff": "K", "logg": "dex (cgs)", "m_h": "dex",
         "alpha_m": "dex",
         "ebv": "mag (Combined19/SFD scale)", "distance": "kpc"}
FLAGS = {1: "not in the gaia_source table (or none given)",
         2: "G synthesised from the XP spectrum (GaiaXPy Gaia DR3 Vega)",
         4: "a quality column (BP-RP, excess factor or RUWE) unknown: its check skipped",
         8: "no valid XP spectrum token (missing, or failing the photometric cuts)",
         16: "no pseudo-luminosity token (no parallax, zero point or error, or failing a cut)",
         32: "no 2MASS colour token",
         64: "no input token at all: every output NaN",
         128: "predicted pseudo-luminosity not positive: no distance",
         256: "an output the model had no training data for (e.g. mass of a model trained on a "
              "catalogue without masses): written NaN, never as if learned",
         512: "an input token the model never saw in training was given: dropped (e.g. a parallax "
              "for a model trained without pseudo-luminosity)",
         1024: "outside the training giants' coverage (as DistMass BITMASK 2): G, BP-RP (Gaia's, "
               "else synthesised from XP), J-K or a predicted teff, logg, m_h, alpha_m, mass, age outside "
               "the model's recorded 0.5-99.5 percentile range of its train split"}
GAIA_COLUMNS = ("phot_g_mean_mag", "bp_rp", "phot_bp_rp_excess_factor", "parallax", "parallax_error",
                "ruwe", "nu_eff_used_in_astrometry", "pseudocolour", "ecl_lat",
                "astrometric_params_solved", "parallax_corrected")
# 2MASS: our name -> accepted column names (ours, Gaia archive tmass_psc_xsc / VizieR)
PHOTOMETRY_ALIASES = {"j": ("j", "j_m", "jmag"), "j_err": ("j_err", "j_msigcom", "e_jmag"),
                      "h": ("h", "h_m", "hmag"), "h_err": ("h_err", "h_msigcom", "e_hmag"),
                      "k": ("k", "ks_m", "k_m", "kmag"), "k_err": ("k_err", "ks_msigcom", "k_msigcom", "e_kmag")}


def default_inputs() -> list[str]:
    """Input setting ``standard+pseudo_luminosity+ln_ebv`` (``starfm.input_settings``):
    bp0-28, rp0-28, BP-RP, J-H, J-K, pseudo-luminosity, ln E(B-V) - 63 tokens, within the
    64-token context; a star without parallax or extinction simply has fewer."""
    from starfm.input_settings import SETTINGS

    return list(SETTINGS["standard+pseudo_luminosity+ln_ebv"].inputs)


@dataclass(frozen=True)
class PredictSettings:
    """Settings of ``predict`` (config.yaml ``predict:`` where the workflow runs it)."""

    chunk_rows: int = 10_000          # XP rows read, tokenised and predicted at a time (memory)
    batch_size: int = 1024            # stars per model forward pass (attention memory: ~0.3 GB)
    inputs: tuple[str, ...] | None = None   # token names offered as context (None: default_inputs())
    # narrows the cuts the model was trained with (stored in model.pt; config 'cuts:' keys, some
    # or none): each range intersected, each maximum the smaller; {} = the model's own cuts
    cuts: dict = field(default_factory=dict)
    zero_point_extra_mas: float = 0.005     # the paper's extra zero-point term (config zero_point:)
    device: str = "cpu"               # cpu | cuda | auto
    progress: bool = True             # tqdm progress bar (stderr)

    @classmethod
    def from_json(cls, value) -> "PredictSettings":
        """From ``--settings`` JSON (or a dict), through the one settings parser."""
        s = parse_settings(cls, value)
        if s.chunk_rows < 1 or s.batch_size < 1:
            raise StarfmInputError("--settings: chunk_rows and batch_size must be >= 1")
        return s


# ---------------------------------------------------------------------------- side tables
class SideTable:
    """A gaia_source or 2MASS table held sorted by source_id (first row of a repeated id)."""

    def __init__(self, path, what: str, wanted: Mapping[str, tuple[str, ...]]):
        cols = read_table_any(path, what)
        sid, first = np.unique(cols["source_id"], return_index=True)
        if len(sid) < len(cols["source_id"]):
            log.warning("%s: %d repeated source_id rows; using the first of each", path,
                        len(cols["source_id"]) - len(sid))
        self.source_id = sid
        self.columns = {}
        for name, aliases in wanted.items():
            found = next((a for a in aliases if a in cols), None)
            if found is not None:
                self.columns[name] = cols[found][first]
        if not self.columns:
            raise StarfmInputError(f"{path}: none of the {what} columns "
                                   f"{sorted(a for al in wanted.values() for a in al)}; it has {sorted(cols)}")
        log.info("%s: %d sources, columns %s", path, len(sid), sorted(self.columns))

    def take(self, source_id: np.ndarray) -> tuple[dict, np.ndarray]:
        rows = match_rows(self.source_id, source_id)
        found = rows >= 0
        out = {}
        for name, col in self.columns.items():
            v = np.full(len(rows), np.nan)
            v[found] = col[rows[found]]
            out[name] = v
        return out, found


# ---------------------------------------------------------------------------- one chunk
def _corrected_parallax(gaia: dict, n: int, extra_mas: float) -> tuple[np.ndarray, np.ndarray]:
    """(zero_point, parallax_corrected): a given ``parallax_corrected`` wins; else L21 + extra."""
    nan = np.full(n, np.nan)
    plx = gaia.get("parallax", nan)
    if "parallax_corrected" in gaia and np.isfinite(gaia["parallax_corrected"]).any():
        corrected = gaia["parallax_corrected"]
        return plx - corrected, corrected
    needed = ("phot_g_mean_mag", "nu_eff_used_in_astrometry", "pseudocolour", "ecl_lat",
              "astrometric_params_solved")
    if not all(c in gaia for c in needed) or not np.isfinite(plx).any():
        return nan, nan
    from starfm.zero_point import extra_term, lindegren_zero_point
    solved = np.nan_to_num(gaia["astrometric_params_solved"], nan=0).astype(np.int64)
    zp, _ = lindegren_zero_point(gaia["phot_g_mean_mag"], gaia["nu_eff_used_in_astrometry"],
                                 gaia["pseudocolour"], gaia["ecl_lat"], solved)
    zp = zp + extra_term(gaia["phot_g_mean_mag"], extra_mas)
    return zp, plx - zp


def token_columns(xp: dict, extra: dict, gaia: SideTable | None, photometry: SideTable | None,
                  settings: PredictSettings) -> tuple[dict, dict, np.ndarray]:
    """The tokeniser's columns of one chunk, the inputs-used columns and the flag bits."""
    sid = xp["source_id"]
    n = len(sid)
    flag = np.zeros(n, np.int32)
    g = {c: np.asarray(extra[c], np.float64) for c in GAIA_COLUMNS if c in extra}  # in the XP file
    if gaia is not None:
        taken, found = gaia.take(sid)
        for c, v in taken.items():   # the gaia_source file wins where it has the star
            g[c] = np.where(found, v, g[c]) if c in g else v
        flag |= np.where(found, 0, 1).astype(np.int32)
    else:
        flag |= 1
    G = g.get("phot_g_mean_mag", np.full(n, np.nan)).copy()
    missing_g = ~np.isfinite(G)
    if missing_g.any():
        G[missing_g] = synthetic_photometry(xp["bp_coefficients"][missing_g],
                                            xp["rp_coefficients"][missing_g])[:, 0]
        flag |= np.where(missing_g, 2, 0).astype(np.int32)
    zero_point, corrected = _corrected_parallax({**g, "phot_g_mean_mag": g.get("phot_g_mean_mag",
                                                                             np.full(n, np.nan))},
                                                n, settings.zero_point_extra_mas)
    cols = {k: xp[k] for k in ("bp_coefficients", "bp_coefficient_errors", "bp_n_relevant_bases",
                               "rp_coefficients", "rp_coefficient_errors", "rp_n_relevant_bases")}
    cols.update(phot_g_mean_mag=G, parallax_corrected=corrected,
                **{c: g[c] for c in ("bp_rp", "phot_bp_rp_excess_factor", "parallax_error", "ruwe")
                   if c in g})
    if photometry is not None:
        phot, _ = photometry.take(sid)
        cols.update(phot)
    for c in ("j", "j_err", "h", "h_err", "k", "k_err"):
        if c not in cols and c in extra:
            cols[c] = np.asarray(extra[c], np.float64)
    unknown = np.zeros(n, bool)
    for c in ("bp_rp", "phot_bp_rp_excess_factor", "ruwe"):
        unknown |= ~np.isfinite(cols.get(c, np.full(n, np.nan)))
    flag |= np.where(unknown, 4, 0).astype(np.int32)
    used = {"phot_g_mean_mag": G, "bp_rp": cols.get("bp_rp", np.full(n, np.nan)),
            "parallax": g.get("parallax", np.full(n, np.nan)), "zero_point": zero_point,
            "parallax_corrected": corrected, "ruwe": cols.get("ruwe", np.full(n, np.nan)),
            **{b: cols.get(b, np.full(n, np.nan)) for b in ("j", "h", "k")}}
    return cols, used, flag


@dataclass(frozen=True)
class ModelRecords:
    """What ``predict`` takes from the model file besides its weights (``model.pt`` key
    ``training``, written by the train stage from ``starfm.dataset.training_records``)."""

    cuts: CutSettings              # the training cuts, narrowed by PredictSettings.cuts
    seen: frozenset                # tokens with training data (inputs fed, outputs written)
    coverage: dict                 # quantity -> (lo, hi): the training giants' coverage


def model_records(fm, settings: PredictSettings) -> ModelRecords:
    """The cuts, tokens seen and coverage of the model ``fm`` under ``settings``. A model file
    written before starfm stored them (no ``training`` record) still loads: the cuts are the
    schema defaults (the only ones older workflows trained with unless a config changed them),
    the tokens seen are those whose standardisation is not the 0 / 1 of an absent token, and no
    star gets the out-of-distribution flag (1024); each fallback is logged."""
    training = getattr(fm, "training", None) or {}
    if training.get("cuts"):
        try:
            base = CutSettings.parse(training["cuts"])
        except StarfmInputError as exc:
            raise StarfmInputError(f"the model file's training cuts are not this starfm's ({exc})") from None
    else:
        log.warning("the model file records no training cuts (written by an older starfm): "
                    "using the default cuts (config.yaml)")
        base = CutSettings()
    cuts, wider = base.narrowed(settings.cuts)
    if wider:
        log.warning("--settings cuts %s would widen the cuts the model was trained with: the "
                    "training cuts are kept there (a config may only narrow them)", wider)
    coverage = {k: (float(v[0]), float(v[1])) for k, v in (training.get("coverage") or {}).items()}
    if not coverage:
        log.warning("the model file records no training coverage (written by an older starfm): "
                    "no star gets the out-of-distribution flag 1024")
    return ModelRecords(cuts, frozenset(fm.tokens_seen), coverage)


def outside_coverage(quantities: Mapping[str, np.ndarray], coverage: Mapping) -> dict:
    """quantity -> stars whose value lies outside its [lo, hi] coverage (NaN: not tested)."""
    out = {}
    for name, x in quantities.items():
        if name in coverage:
            lo, hi = coverage[name]
            out[name] = np.isfinite(x) & ((x < lo) | (x > hi))
    return out


def _colour(used: dict, xp: dict) -> np.ndarray:
    """BP-RP for the coverage test: Gaia's where given, else synthesised from the XP spectrum
    (GaiaXPy Gaia DR3 Vega, as the G fallback; NaN without both bands). Never a token."""
    bp_rp = np.asarray(used["bp_rp"], np.float64).copy()
    missing = ~np.isfinite(bp_rp)
    if missing.any():
        mags = synthetic_photometry(xp["bp_coefficients"][missing], xp["rp_coefficients"][missing])
        bp_rp[missing] = mags[:, 1] - mags[:, 2]
    return bp_rp


def predict_chunk(fm, xp: dict, extra: dict, gaia: SideTable | None, photometry: SideTable | None,
                  settings: PredictSettings, inputs: list[str], records: ModelRecords | None = None,
                  tally: dict | None = None) -> dict:
    """One chunk of XP rows -> the output columns (see the module docstring). ``tally``: a dict
    that collects, per quantity, the number of stars outside the training coverage."""
    records = records or model_records(fm, settings)
    cols, used, flag = token_columns(xp, extra, gaia, photometry, settings)
    values, _ = tokenise(cols, records.cuts, missing_quality="pass")
    ok = validity(cols, records.cuts, missing_quality="pass")
    present = np.isfinite(values)
    flag |= np.where(ok["xp"] & present[:, :2 * tokens.N_XP].any(1), 0, 8).astype(np.int32)
    flag |= np.where(present[:, tokens.TOKEN_INDEX["pseudo_luminosity"]], 0, 16).astype(np.int32)
    flag |= np.where(present[:, tokens.TOKEN_INDEX["j_h"]] | present[:, tokens.TOKEN_INDEX["j_k"]],
                     0, 32).astype(np.int32)
    in_idx = tokens.index(inputs)
    unseen = np.array([k for k in in_idx if tokens.VOCABULARY[k] not in records.seen], dtype=np.int64)
    if unseen.size:     # never fed to the model: it learned nothing about them
        flag |= np.where(present[:, unseen].any(1), 512, 0).astype(np.int32)
        values[:, unseen] = np.nan
        present[:, unseen] = False
    n_tokens = np.minimum(present[:, in_idx].sum(1), fm.context_max).astype(np.int16)
    flag |= np.where(n_tokens == 0, 64, 0).astype(np.int32)
    mean, std = fm.predict(values, inputs=inputs, outputs=list(OUTPUTS.values()),
                           batch_size=settings.batch_size)
    unlearned = [j for j, token in enumerate(OUTPUTS.values()) if token not in records.seen]
    if unlearned:
        mean[:, unlearned] = np.nan
        std[:, unlearned] = np.nan
        flag |= 256
    predicted = dict(zip(OUTPUTS.values(), mean.T))
    quantities = {"phot_g_mean_mag": used["phot_g_mean_mag"], "bp_rp": _colour(used, xp),
                  "j_k": values[:, tokens.TOKEN_INDEX["j_k"]].astype(np.float64),
                  **{t: predicted[t] for t in COVERAGE_OUTPUTS}}
    outside = outside_coverage(quantities, records.coverage)
    for name, mask in outside.items():
        flag |= np.where(mask, 1024, 0).astype(np.int32)
        if tally is not None:
            tally[name] = tally.get(name, 0) + int(mask.sum())
    out = {"source_id": xp["source_id"]}
    G = used["phot_g_mean_mag"]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for j, (name, token) in enumerate(OUTPUTS.items()):
            mu, sig = mean[:, j], std[:, j]
            if token in ("ln_age", "ln_ebv"):
                mu = np.exp(mu)
                sig = mu * sig
            elif token == "pseudo_luminosity":
                bad = ~(mu > 0)
                flag |= np.where(bad & (n_tokens > 0) & (j not in unlearned), 128, 0).astype(np.int32)
                d = np.where(bad, np.nan, 10.0 ** (G / 5.0) / mu)
                sig = d * sig / np.abs(mu)
                mu = d
            out[name], out[f"{name}_err"] = mu, sig
    out.update(used)
    out["n_tokens"] = n_tokens
    out["flag"] = flag
    return out


# ---------------------------------------------------------------------------- the command
def predict(model, xp, out, gaia_source=None, photometry=None, settings: PredictSettings | None = None,
            fm=None) -> dict:
    """Predict for every source of the XP file ``xp`` and write ``out`` (format by extension).

    Returns counts (rows, flags, seconds). ``fm``: an already loaded StarFM (else ``model`` is loaded).
    """
    settings = settings or PredictSettings()
    t0 = time.perf_counter()
    writer = CatalogueWriter(out, meta=_meta(model, xp, gaia_source, photometry, settings))
    if fm is None:
        from starfm.inference import StarFM
        fm = StarFM.load(model, device=settings.device)
    inputs = list(settings.inputs) if settings.inputs is not None else default_inputs()
    _check_tokens(inputs, fm, "inputs")
    records = model_records(fm, settings)
    writer.meta["cuts"] = dataclasses.asdict(records.cuts)   # the cuts actually applied
    writer.meta["training_coverage"] = {k: list(v) for k, v in records.coverage.items()}
    never = [t for t in inputs if t not in records.seen]
    if never:
        log.warning("the model never saw input token(s) %s in training: never fed to it (flag 512)",
                    never)
    unlearned = [name for name, t in OUTPUTS.items() if t not in records.seen]
    if unlearned:
        log.warning("the model had no training data for %s: written NaN (flag 256)", unlearned)
    gaia = SideTable(gaia_source, "gaia_source", {c: (c,) for c in GAIA_COLUMNS}) if gaia_source else None
    phot = SideTable(photometry, "2MASS photometry", PHOTOMETRY_ALIASES) if photometry else None
    counts = {"rows": 0, "flags": {str(b): 0 for b in FLAGS}, "outside": {}}
    bar = tqdm(desc="predict", unit="star", file=sys.stderr, disable=not settings.progress or None)
    with writer:
        for xp_cols, extra in iter_xp_chunks(xp, settings.chunk_rows):
            if len(xp_cols["source_id"]) == 0:
                continue
            result = predict_chunk(fm, xp_cols, extra, gaia, phot, settings, inputs, records,
                                   counts["outside"])
            writer.write(result)
            counts["rows"] += len(result["source_id"])
            for b in FLAGS:
                counts["flags"][str(b)] += int(((result["flag"] & b) > 0).sum())
            bar.update(len(result["source_id"]))
        if counts["rows"] == 0:
            raise StarfmInputError(f"{xp}: the XP table is empty")
    bar.close()
    counts["seconds"] = time.perf_counter() - t0
    log.info("wrote %s: %d sources in %.1f s; flags %s; outside the training coverage by "
             "quantity %s", out, counts["rows"], counts["seconds"],
             {FLAGS[int(b)]: c for b, c in counts["flags"].items() if c}, counts["outside"])
    return counts


def merge(parts, out) -> int:
    """Concatenate per-file prediction tables (any readable format) into ``out``; rows written."""
    parts = [Path(p) for p in parts]
    if not parts:
        raise StarfmInputError("predict-merge: no part files given")
    n_ids = 0
    ids = []
    with CatalogueWriter(out, meta={"parts": [str(p) for p in parts]}) as writer:
        names = None
        for p in parts:
            cols = read_columns(p)
            if names is None:
                names = list(cols)
            elif list(cols) != names:
                raise StarfmInputError(f"{p}: columns {list(cols)} differ from {parts[0]}'s {names}")
            writer.write(cols)
            ids.append(cols["source_id"])
            n_ids += len(cols["source_id"])
    repeats = n_ids - len(np.unique(np.concatenate(ids)))
    if repeats:
        log.warning("%d source_id repeated across the part files (kept every row)", repeats)
    log.info("merged %d files into %s (%d rows)", len(parts), out, n_ids)
    return n_ids


def _check_tokens(names, fm, what):
    unknown = [n for n in names if n not in fm.token_index]
    if unknown:
        raise StarfmInputError(f"--settings {what}: unknown token name(s) {unknown}; "
                               f"the model's vocabulary is starfm.tokens.VOCABULARY")


def _meta(model, xp, gaia_source, photometry, settings) -> dict:
    return {"model": str(model), "xp": str(xp), "gaia_source": str(gaia_source or ""),
            "photometry": str(photometry or ""), "units": UNITS,
            "flags": {str(k): v for k, v in FLAGS.items()},
            "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "progress"}}


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser(
        "predict", "Predict mass, age, Teff, logg, [M/H], E(B-V) and distance (with uncertainties) "
        "for every source of an XP file in any archive format, streamed in chunks; output format "
        "by extension (.fits, .csv, .ecsv, .h5/.hdf5, .parquet).")
    parser.add_argument("--model", required=True, help="model.pt of the train stage")
    parser.add_argument("--xp", required=True, help="XP continuous-spectrum table (any format)")
    parser.add_argument("--gaia-source", default=None, help="optional gaia_source table (G, BP-RP, parallax, ...)")
    parser.add_argument("--photometry", default=None, help="optional 2MASS table (source_id, j, h, k + errors)")
    parser.add_argument("--out", required=True, help="output catalogue")
    parser.add_argument("--settings", default=None,
                        help='JSON of PredictSettings, e.g. \'{"chunk_rows": 10000, "batch_size": 1024}\'')
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    predict(args.model, args.xp, args.out, args.gaia_source, args.photometry,
            PredictSettings.from_json(args.settings))
    return 0


@run_cli
def cli_merge(argv=None) -> int:
    parser = stage_parser("predict-merge", "Concatenate per-file prediction tables into one catalogue.")
    parser.add_argument("--parts", nargs="+", required=True, help="prediction tables")
    parser.add_argument("--out", required=True, help="merged catalogue (format by extension)")
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    merge(args.parts, args.out)
    return 0
