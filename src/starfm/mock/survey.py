"""The ``mock-survey`` stage: generate the mock survey and write it in the real files' formats.

``make_mock_survey`` writes, under ``out_dir``:

- ``apogee/allStar-dr17-synspec_rev1.fits`` and ``apogee/APOGEE_DistMass-DR17_v1.6.1.fits``
  (row-aligned; real allStar column names, dtypes and bad-value conventions;
  :mod:`starfm.mock.apogee`);
- ``gaia_archive/gaia_source.h5`` and ``gaia_archive/xp_continuous.h5`` (archive column names and
  dtypes, one row per distinct non-zero source_id; sources without XP absent) + ``manifest.json``,
  served by :class:`starfm.mock.archive.MockGaiaArchive`;
- ``dust/combined19/combine19.h5``: a synthetic 3-D dust map in mwdust's Combined19 format
  (:mod:`starfm.mock.dust_map`);
- ``truth.h5``: the true parameters of every allStar row (:mod:`starfm.mock.truth`).

Stars are generated in chunks of ``CHUNK_SIZE`` (vectorised, each chunk from its own seeded
generator) and streamed to the Gaia store; the physics is in the modules of :mod:`starfm.mock`.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from starfm.archive_formats import DR3_SOLUTION_ID, XP_FORMATS
from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.constants import ALLSTAR_NAME, DISTMASS_NAME, EBV_TRUE_OVER_SFD
from starfm.dust_map import Combined19Map, combined19_path
from starfm.errors import StarfmInputError
from starfm.tables import atomic_path
from starfm.settings import add_settings_argument, parse_settings
from starfm.xp_flux import synthetic_photometry
from starfm.mock import apogee, photometry, population, sky_model, spectra, truth, xp_continuous
from starfm.mock.archive import GAIA_SOURCE_FILE, MANIFEST_FILE, XP_CONTINUOUS_FILE
from starfm.mock.dust_map import make_dust_map
from starfm.mock.gaia_source import GAIA_SOURCE_STORE_DTYPES, deduplicate_ids, gaia_source_rows, source_ids
from starfm.mock.xp_continuous import XP_DTYPES, xp_continuous_rows

log = logging.getLogger(__name__)

MIN_STARS = 50
CHUNK_SIZE = 50_000


def make_mock_survey(out_dir: str | os.PathLike, n_stars: int = 34000, seed: int = 20260101,
                     xp_format: str = "fits", settings: "MockSettings | None" = None) -> dict[str, Path]:
    """Generate the mock survey (``n_stars`` allStar rows) under ``out_dir``; return the paths.

    ``settings`` gives the realism settings (extinction law, zero-point residual, dust-map error,
    XP noise and relevancy; defaults: :class:`MockSettings`'s); ``n_stars``, ``seed`` and
    ``xp_format`` are the arguments given here."""
    from tqdm import tqdm
    from zero_point import zpt

    if not isinstance(n_stars, (int, np.integer)) or n_stars < MIN_STARS:
        raise StarfmInputError(f"mock.n_stars: need an integer >= {MIN_STARS} (got {n_stars!r}); "
                               "the survey's flag and duplicate fractions need at least that many rows")
    if xp_format not in XP_FORMATS:
        raise StarfmInputError(f"mock.xp_format: '{xp_format}' is not one of {list(XP_FORMATS)}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise StarfmInputError(f"mock.seed: need a non-negative integer (got {seed!r})")
    import dataclasses

    settings = dataclasses.replace(settings or MockSettings(), n_stars=int(n_stars), seed=int(seed),
                                   xp_format=xp_format)
    if not 2.0 <= settings.extinction_r_v <= 6.0:
        raise StarfmInputError(f"mock.extinction_r_v: Fitzpatrick (1999) is defined for R_V in 2-6 "
                               f"(got {settings.extinction_r_v})")
    if settings.model not in ("sky", "physical"):
        raise StarfmInputError(f"mock.model: '{settings.model}' is not one of ['sky', 'physical']")
    if settings.model == "sky":
        sky_model.load_sky_model()            # a missing or corrupt sky_model.npz fails here, first
        if settings.xp_relevancy == "snr":
            log.warning("mock.model sky with xp_relevancy snr: the S/N rule is calibrated on the "
                        "physical model and calls 40-54 bases relevant on the sky model's spectra")
    out = Path(out_dir)
    paths = {"allstar": out / "apogee" / ALLSTAR_NAME, "distmass": out / "apogee" / DISTMASS_NAME,
             "manifest": out / "gaia_archive" / MANIFEST_FILE,
             "gaia_source": out / "gaia_archive" / GAIA_SOURCE_FILE,
             "xp_continuous": out / "gaia_archive" / XP_CONTINUOUS_FILE,
             "dust_map": combined19_path(out / "dust"), "truth": out / "truth.h5"}

    log.info("mock survey: %d allStar rows, seed %d, into %s", n_stars, seed, out)
    dust = make_dust_map(paths["dust_map"], np.random.default_rng([seed, 0]))
    log.info("dust map: %d pixels (nside 64/128) -> %s", dust.n_pixels, paths["dust_map"])
    fields = population.make_fields(n_stars, np.random.default_rng([seed, 2]))
    # the zero-point residual the Lindegren recipe leaves: an offset plus a per-plate scatter
    fields["zp_residual"] = settings.parallax_zp_residual_mas + settings.parallax_zp_residual_scatter_mas \
        * np.random.default_rng([seed, 4]).standard_normal(len(fields["kind"]))
    zpt.load_tables()
    spectra.xp_basis()

    gaia_writer = _H5Appender(paths["gaia_source"], GAIA_SOURCE_STORE_DTYPES)
    xp_writer = _H5Appender(paths["xp_continuous"], XP_DTYPES)
    allstar_parts, distmass_parts, truth_parts = [], [], []
    seen_source_ids = np.empty(0, dtype=np.int64)
    seen_apogee_ids: set[str] = set()
    n_chunks = -(-n_stars // CHUNK_SIZE)
    try:
        for ci in tqdm(range(n_chunks), desc="mock survey chunks", disable=n_chunks < 2):
            n_rows = min(CHUNK_SIZE, n_stars - ci * CHUNK_SIZE)
            s = _chunk(n_rows, ci, seed, fields, dust, zpt, settings)
            rng = np.random.default_rng([seed, 3, ci])
            s["source_id"] = deduplicate_ids(s["source_id"], seen_source_ids, rng)
            s["gaia"]["source_id"] = s["xp"]["source_id"] = s["source_id"]
            seen_source_ids = np.concatenate([seen_source_ids, s["source_id"]])
            s["apogee_id"] = apogee.unique_apogee_ids(apogee.apogee_ids(s["ra"], s["dec"]), seen_apogee_ids)
            cols, distmass, base, is_dup, unmatched = apogee.apogee_rows(
                s, fields, rng, **_sky_aspcap(settings, np.random.default_rng([seed, 7, ci])))
            matched = ~unmatched
            gaia_writer.append({k: v[matched] for k, v in s["gaia"].items() if not k.startswith("_")})
            keep = matched & s["xp"]["_has_xp"]
            xp_writer.append({k: v[keep] for k, v in s["xp"].items() if not k.startswith("_")})
            allstar_parts.append(cols)
            distmass_parts.append(distmass)
            truth_parts.append(truth.truth_columns(s, base, is_dup, unmatched, keep))
            log.info("chunk %d/%d: %d rows (%d duplicates), %d Gaia sources, %d with XP",
                     ci + 1, n_chunks, n_rows, is_dup.sum(), matched.sum(), keep.sum())
    except BaseException:
        gaia_writer.abort()
        xp_writer.abort()
        raise
    common = {"seed": int(seed), "n_allstar_rows": int(n_stars)}
    gaia_writer.close({**common, "table": "gaiadr3.gaia_source (mock)"})
    if settings.xp_correlated_noise:
        templates = xp_continuous.correlation_templates()
        group = xp_writer.file.create_group("correlation_templates")
        for band in ("bp", "rp"):
            group.create_dataset(band, data=templates["lower"][band])
        group.attrs["source"] = "real Gaia DR3 correlations (starfm/mock/data/xp_correlations.npz)"
    xp_writer.close({**common, "table": "gaiadr3.xp_continuous_mean_spectrum (mock)" + (
        "" if settings.xp_correlated_noise else ", no correlations")})

    def cat(parts):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    apogee.write_fits(paths["allstar"], cat(allstar_parts), apogee.ALLSTAR_FORMATS, "allStar")
    apogee.write_fits(paths["distmass"], cat(distmass_parts), apogee.DISTMASS_FORMATS, "DistMass")
    truth.write_truth(paths["truth"], cat(truth_parts), common, settings)
    manifest = {"n_sources": int(gaia_writer.n), "n_xp_sources": int(xp_writer.n),
                "n_allstar_rows": int(n_stars), "seed": int(seed), "xp_format": xp_format,
                "gaia_source": paths["gaia_source"].name, "xp_continuous": paths["xp_continuous"].name,
                "solution_id": DR3_SOLUTION_ID,
                "xp_columns_omitted": [] if settings.xp_correlated_noise else
                ["bp_coefficient_correlations", "rp_coefficient_correlations"]}
    with atomic_path(paths["manifest"]) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("wrote %d allStar rows, %d Gaia sources, %d with XP", n_stars, gaia_writer.n, xp_writer.n)
    return paths


def _chunk(n_rows: int, chunk_index: int, seed: int, fields: dict, dust: Combined19Map,
           zpt_module, settings: "MockSettings") -> dict:
    """Generate ``n_rows`` allStar rows (with their duplicates) and everything that goes with them."""
    rng = np.random.default_rng([seed, 1, chunk_index])
    n_dup = int(round(apogee.DUPLICATE_FRACTION * n_rows))
    n = n_rows - n_dup
    f, glon, glat, ra, dec = population.draw_positions(n, fields, rng)
    sky = sky_model.load_sky_model() if settings.model == "sky" else None
    if sky is not None:
        sky_rng = np.random.default_rng([seed, 6, chunk_index])
        stars = sky_model.draw_stars(n, sky, sky_rng)
        # extinction-free G-normalised XP coefficients and J-H, J-K learned from the library
        shape = sky.draw(np.stack([stars[k] for k in sky_model.LABEL_COLUMNS], 1), sky_rng)
    else:
        stars = population.draw_stars(n, fields["kind"][f], rng)

    # distances from an APOGEE-like H selection, with the extinction along the sightline
    abs_j, abs_h, abs_k = photometry.twomass_absolute(stars["teff"], stars["radius"], stars["m_h"])
    if sky is not None:
        j_h, j_k = shape[:, -2], shape[:, -1]
        abs_j, abs_k = abs_h + j_h, abs_h + j_h - j_k
    r_v = settings.extinction_r_v
    k_jhk = photometry.twomass_extinction(r_v)
    h_target = sky_model.draw_h(sky, n, sky_rng) if sky is not None else None
    distance, ebv_map = population.select_distances(abs_h, k_jhk["H"], glon, glat, dust, rng, r_v, h_target)
    # the map is not the sky: true E(B-V) = map x lognormal(scatter) + offset (>= 0)
    err_rng = np.random.default_rng([seed, 5, chunk_index])
    sig = settings.ebv_map_scatter
    ebv = np.clip(ebv_map * np.exp(sig * err_rng.standard_normal(n) - 0.5 * sig ** 2)
                  + settings.ebv_map_offset, 0.0, None)
    a_v = r_v * EBV_TRUE_OVER_SFD * ebv
    dist_mod = 5 * np.log10(distance) + 10
    jhk_true = {b: m + dist_mod + a_v * k_jhk[b] for b, m in zip("JHK", (abs_j, abs_h, abs_k))}

    # spectra -> XP coefficients -> synthetic G, BP, RP
    if sky is not None:
        bp_true, rp_true = sky_model.xp_coefficients(stars, shape, distance, a_v, r_v)
    else:
        bp_true, rp_true = spectra.xp_coefficients(stars["teff"], stars["logg"], stars["m_h"],
                                                   stars["radius"], distance, a_v, c_n=stars["c_n"],
                                                   alpha_m=stars["alpha_m"], r_v=r_v)
    mags = synthetic_photometry(bp_true, rp_true)
    g_true, bp_rp_true = mags[:, 0], mags[:, 1] - mags[:, 2]

    out = {"n": n, "n_dup": n_dup, "glon": glon, "glat": glat, "ra": ra, "dec": dec, "field": f,
           "distance": distance, "ebv": ebv, "ebv_map": ebv_map, "a_v": a_v, "g_true": g_true, "bp_rp_true": bp_rp_true,
           "jhk": jhk_true, **stars}
    out["source_id"] = source_ids(ra, dec, rng)
    out["gaia"] = gaia_source_rows(out, rng, zpt_module, fields["zp_residual"][f])
    out["xp"] = xp_continuous_rows(out, bp_true, rp_true, rng, correlated=settings.xp_correlated_noise,
                                   relevancy=settings.xp_relevancy)
    return out


def _sky_aspcap(settings: "MockSettings", rng: np.random.Generator) -> dict:
    """The sky model's S/N of each star's H and ASPCAP errors at that S/N (``mock.model: sky``),
    as ``apogee.apogee_rows`` takes them; ``{}`` (its own) for the physical mock."""
    if settings.model != "sky":
        return {}
    from starfm.mock import sky_population
    sky = sky_model.load_sky_model()
    params = sky.part("errors_")
    return {"snr_of_h": lambda h: sky_model.draw_snr(sky, h, rng),
            "label_errors": lambda snr, teff, m_h: sky_population.label_errors(params, snr, teff, m_h, rng)}


class _H5Appender:
    """Column table streamed to HDF5 (resizable datasets), renamed into place on close."""

    def __init__(self, path: Path, dtypes: dict):
        self._ctx = atomic_path(path)
        self._tmp = self._ctx.__enter__()
        self.file = h5py.File(self._tmp, "w")
        self.dtypes = dtypes
        self.n = 0

    def append(self, cols: dict):
        m = len(cols["source_id"])
        for name, dtype in self.dtypes.items():
            arr = np.asarray(cols[name]).astype(dtype)
            if name not in self.file:
                self.file.create_dataset(name, data=arr, maxshape=(None,) + arr.shape[1:],
                                         chunks=(4096,) + arr.shape[1:])
            else:
                ds = self.file[name]
                ds.resize(self.n + m, axis=0)
                ds[self.n:] = arr
        self.n += m

    def close(self, attrs: dict):
        for k, v in attrs.items():
            self.file.attrs[k] = v
        self.file.close()
        self._ctx.__exit__(None, None, None)

    def abort(self):
        self.file.close()
        self._ctx.__exit__(RuntimeError, RuntimeError(), None)


@dataclass(frozen=True)
class MockSettings:
    """config.yaml ``mock:`` (defaults = the schema's)."""

    SECTION = "mock"
    n_stars: int = 34000            # allStar-like rows (733901 = the real DR17 size)
    seed: int = 20260101            # seed of every random draw of the mock survey
    xp_format: str = "fits"         # format in which the mock archive serves XP tables
    extinction_r_v: float = 3.1     # R_V of the injected Fitzpatrick (1999) law (2-6)
    parallax_zp_residual_mas: float = 0.01          # zero point the Lindegren recipe leaves: offset ...
    parallax_zp_residual_scatter_mas: float = 0.01  # ... and its scatter between plates [mas]
    ebv_map_scatter: float = 0.15   # true E(B-V) = map x lognormal(this) + offset
    ebv_map_offset: float = 0.005   # [mag, SFD scale]
    xp_correlated_noise: bool = True  # XP noise with real DR3 coefficient correlations
    xp_relevancy: str = "g"         # n_relevant_bases: g (real median vs G) | snr (|c|/err rule; for model physical)
    model: str = "sky"              # sky: population, spectra, colours, label errors learned from the real
    #                                 library (sky_model.py); physical: the parametric giants and model spectra


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("mock-survey", "Generate the seeded mock survey (allStar, DistMass, Gaia "
                          "archive store, Combined19 dust map, truth) in the real files' formats.")
    parser.add_argument("--out-dir", required=True, help="output directory (e.g. results/mock)")
    add_settings_argument(parser, MockSettings)
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    s = parse_settings(MockSettings, args.settings)
    make_mock_survey(args.out_dir, n_stars=s.n_stars, seed=s.seed, xp_format=s.xp_format, settings=s)
    return 0
