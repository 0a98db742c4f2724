"""Fig. 7: XP spectra the model generates from parameters, along the model's own isochrones;
and, for runs on real stars (no mass, no age for most), generated against observed spectra.

The paper takes (Teff, logg) for each (mass, age, [M/H]) from MIST isochrones; we have no
isochrone grid, so the isochrone is the model's own: it is asked for Teff and logg given mass,
ln age, [M/H] and the low-extinction reference E(B-V) (:func:`starfm.extinction_curve.reference_ebv`), and then
for the 110 XP coefficients and the pseudo-luminosity given all six. Coefficients become fluxes
through GaiaXPy's calibration (:func:`starfm.figures.common.xp_flux`, 336-1020 nm). The tokens
are coefficients / F_G; the flux at 10 pc is restored from the pseudo-luminosity L = parallax
10^(G/5): at 10 pc (parallax 100 mas) G = 5 log10(L / 100).

Generated versus observed (the figure of library runs, which have no mass, no parallax and few
ages): a few (Teff, logg, [M/H]) bins populated by test-split stars with XP. For each star of a
bin the model is asked for the 110 XP tokens (coefficients / F_G) given only the bin centre's
Teff, logg and [M/H] and, where the model has seen that token, the star's own ln E(B-V): the
real giants' reddening (median E(B-V) ~0.5) is not a label but shapes the spectrum as much as
the labels do. Generated and observed coefficients are sampled as flux through GaiaXPy's bases
(:func:`starfm.figures.common.xp_flux`, as ``starfm generate`` samples them); a coefficient most of
a bin's stars lack (beyond the archive's relevant bases) is 0 in both. References: the median of
all test stars (label-blind) and the model given each star's E(B-V) only. Scores, in units of
the bin's observed scatter (half its 16-84 % range, per coefficient), over bp0..bp(k-1) and
rp0..rp(k-1) where present in enough of the bin's stars:

- ``paired``: median over the bin's stars and coefficients of |prediction_i - observed_i|;
- ``median``: median over coefficients of |median prediction - observed median|. On the library
  run a bin's observed median lies within ~0.3-0.5 scatter of the label-blind median, so this
  one does not separate label-aware from label-blind spectra; the paired score does.
"""
from __future__ import annotations

import logging

import warnings
from dataclasses import dataclass

import numpy as np

from starfm import tokens
from starfm.errors import StarfmInputError
from starfm.figures.common import (PARAMETER_TOKENS, XP_TOKENS, finite_float, plt,
                                   wavelength_nm, xp_flux)


@dataclass(frozen=True)
class Settings:
    n_steps: int = 5                      # spectra per panel
    mass_range: tuple = (1.05, 1.15)      # Msun, at age_fixed_gyr and [M/H] 0
    age_range: tuple = (7.0, 8.0)         # Gyr, at mass_fixed and [M/H] 0
    m_h_range: tuple = (-1.0, 0.4)        # dex, at mass_fixed and age_fixed_gyr
    mass_fixed: float = 1.1
    age_fixed_gyr: float = 7.5


def generate(model, mass, age_gyr, m_h) -> dict:
    """Model isochrone (Teff, logg) and generated spectra for each (mass, age, [M/H])."""
    from starfm.extinction_curve import reference_ebv
    mass, age_gyr, m_h = np.broadcast_arrays(*(np.asarray(a, float) for a in (mass, age_gyr, m_h)))
    n = mass.size
    values = np.full((n, len(tokens.VOCABULARY)), np.nan)
    ix = tokens.TOKEN_INDEX
    values[:, ix["mass"]], values[:, ix["ln_age"]], values[:, ix["m_h"]] = mass, np.log(age_gyr), m_h
    values[:, ix["ln_ebv"]] = np.log(reference_ebv(model))
    iso, _ = model.predict(values, inputs=["mass", "ln_age", "m_h", "ln_ebv"], outputs=["teff", "logg"])
    values[:, ix["teff"]], values[:, ix["logg"]] = iso[:, 0], iso[:, 1]
    mean, _ = model.predict(values, inputs=PARAMETER_TOKENS, outputs=XP_TOKENS + ["pseudo_luminosity"])
    mean = np.asarray(mean, float)
    norm_flux = xp_flux(mean[:, :tokens.N_XP], mean[:, tokens.N_XP:2 * tokens.N_XP])
    lum = mean[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        g10 = 5 * np.log10(np.where(lum > 0, lum, np.nan) / 100.0)
    return {"mass": mass, "age": age_gyr, "m_h": m_h, "teff": iso[:, 0], "logg": iso[:, 1],
            "pseudo_luminosity": lum, "g_10pc": g10, "norm_flux": norm_flux,
            "flux_10pc": norm_flux * tokens.g_flux(g10)[:, None]}


def prepare_generated_spectra(model, s: Settings = Settings()) -> dict:
    k = s.n_steps
    panels = {"mass": (np.linspace(*s.mass_range, k), s.age_fixed_gyr, 0.0),
              "age": (s.mass_fixed, np.linspace(*s.age_range, k), 0.0),
              "m_h": (s.mass_fixed, s.age_fixed_gyr, np.linspace(*s.m_h_range, k))}
    out = {name: generate(model, *args) for name, args in panels.items()}
    out["wavelength"] = wavelength_nm()
    return out


def plot_generated_spectra(d: dict, s: Settings = Settings()):
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(19, 5.5), constrained_layout=True)
    lam = d["wavelength"]
    spec = [("mass", "flux_10pc", r"$M$ = {:.3f} M$_\odot$",
             f"age {s.age_fixed_gyr:g} Gyr, [M/H] = 0", "flux at 10 pc [W m$^{-2}$ nm$^{-1}$]"),
            ("age", "flux_10pc", "age = {:.2f} Gyr", f"$M$ = {s.mass_fixed:g} M$_\\odot$, [M/H] = 0",
             "flux at 10 pc [W m$^{-2}$ nm$^{-1}$]"),
            ("m_h", "norm_flux", "[M/H] = {:+.2f}",
             f"$M$ = {s.mass_fixed:g} M$_\\odot$, age {s.age_fixed_gyr:g} Gyr",
             r"G-normalised flux [W m$^{-2}$ nm$^{-1}$ / (e$^-$ s$^{-1}$)]")]
    for ax, (key, flux_key, fmt, fixed, ylabel) in zip(axes, spec):
        e = d[key]
        colours = pyplot.get_cmap("plasma")(np.linspace(0, 0.85, len(e[key])))
        for i in range(len(e[key])):
            ax.plot(lam, e[flux_key][i], color=colours[i],
                    label=fmt.format(e[key][i]) + f"  ($T_{{\\rm eff}}$ {e['teff'][i]:.0f} K, "
                                                  f"log g {e['logg'][i]:.2f})")
        ax.set(xlabel=r"$\lambda$ [nm]", ylabel=ylabel, title=f"varying {key.replace('m_h', '[M/H]')}"
               f" at {fixed}")
        ax.legend(fontsize=7)
    fig.suptitle("Fig. 7: XP spectra generated from parameters along the model's isochrone "
                 "(Teff, logg from mass, age, [M/H])")
    return fig


def build(inputs, settings):
    d = prepare_generated_spectra(inputs.model, settings)
    lam = d["wavelength"]
    numbers = {}
    for key in ("mass", "age", "m_h"):
        e = d[key]
        total = np.trapezoid(e["flux_10pc"], lam, axis=1)
        numbers[key] = {"values": [float(v) for v in e[key]],
                        "teff": [finite_float(v) for v in e["teff"]],
                        "logg": [finite_float(v) for v in e["logg"]],
                        "flux_ratio_last_first": finite_float(total[-1] / total[0])}
    # depth of the blue metal-line region relative to the red, per [M/H] step (G-normalised)
    e = d["m_h"]
    blue = (lam > 380) & (lam < 450)
    red = (lam > 750) & (lam < 850)
    ratio = e["norm_flux"][:, blue].mean(1) / e["norm_flux"][:, red].mean(1)
    numbers["m_h"]["blue_to_red_ratio"] = [finite_float(v) for v in ratio]
    return plot_generated_spectra(d, settings), numbers


# ------------------------------------------------------------------ generated versus observed
# the labels a bin is defined by and the model is given (names, not tokens.LABELS: a label token
# added to the vocabulary, such as [alpha/M], is not a bin axis unless it is added here)
BIN_LABELS = ("teff", "logg", "m_h")


@dataclass(frozen=True)
class VersusObservedSettings:
    # bin centres (one bin per position), chosen where the library run's 2,285 test giants are
    # dense along the RGB and red clump (29-47 test giants with XP in each of these bins)
    teff_centres: tuple = (4200.0, 4500.0, 4500.0, 4750.0, 4750.0, 4900.0)    # K
    logg_centres: tuple = (1.7, 2.0, 2.45, 2.45, 2.45, 2.9)                    # dex
    m_h_centres: tuple = (0.0, -0.4, 0.3, -0.4, 0.0, 0.0)                      # dex
    teff_half_width: float = 125.0        # K
    logg_half_width: float = 0.2          # dex
    m_h_half_width: float = 0.15          # dex
    min_stars: int = 10                   # a bin with fewer test stars with XP is left out
    n_coefficients: int = 30              # score over bp0..bp(n-1) and rp0..rp(n-1)
    min_stars_per_coefficient: int = 5    # a coefficient present in fewer of a bin's stars: not scored


def _band(x: np.ndarray):
    """Median, 16th and 84th percentiles over stars (axis 0), NaN ignored."""
    with warnings.catch_warnings():                 # all-NaN columns: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(x, [50, 16, 84], axis=0)


def _score(pred: np.ndarray, med: np.ndarray, scatter: np.ndarray, usable: np.ndarray) -> float:
    """Median over the usable coefficients of |pred - observed median| / observed scatter."""
    z = np.abs(pred - med)[usable] / scatter[usable]
    return float(np.median(z)) if z.size else float("nan")


def _xp_tokens(model, given: dict) -> np.ndarray:
    """The model's 110 XP tokens (coefficients / F_G) given the named tokens (arrays of one length;
    NaN = not given): what ``starfm generate`` asks, without its table I/O (which the figures'
    environment does not carry)."""
    n = len(next(iter(given.values())))
    values = np.full((n, len(tokens.VOCABULARY)), np.nan)
    for name, v in given.items():
        values[:, tokens.TOKEN_INDEX[name]] = v
    mean, _ = model.predict(values, inputs=list(given), outputs=XP_TOKENS)
    return np.asarray(mean, float)


def prepare_generated_vs_observed(ds, model, s: VersusObservedSettings = VersusObservedSettings()) -> dict:
    """Per populated bin: the observed and generated spectra (median, 16-84 %), the references
    and the scores (see the module docstring)."""
    centres = np.stack([np.asarray(c, float) for c in (s.teff_centres, s.logg_centres, s.m_h_centres)], 1) \
        if len({len(s.teff_centres), len(s.logg_centres), len(s.m_h_centres)}) == 1 else None
    if centres is None or len(centres) == 0:
        raise StarfmInputError("figures settings: teff_centres, logg_centres and m_h_centres must "
                               "have one equal, non-zero length; got "
                               f"{[len(s.teff_centres), len(s.logg_centres), len(s.m_h_centres)]}")
    ix = tokens.TOKEN_INDEX
    test = ds.values[ds.is_test].astype(float)
    has_xp = np.isfinite(test[:, ix[tokens.XP_BP[0]]]) & np.isfinite(test[:, ix[tokens.XP_RP[0]]])
    test = test[has_xp]
    if len(test) == 0:
        raise StarfmInputError(f"{ds.path}: no test star has BP and RP coefficients")
    coef = test[:, tokens.index(XP_TOKENS)]
    half = np.array([s.teff_half_width, s.logg_half_width, s.m_h_half_width])
    labels = test[:, tokens.index(list(BIN_LABELS))]
    member = np.all(np.abs(labels[None] - centres[:, None]) <= half, axis=2)     # (bins, stars)
    counts = member.sum(1)
    keep = np.flatnonzero(counts >= s.min_stars)
    skipped = [{"teff": float(centres[b, 0]), "logg": float(centres[b, 1]),
                "m_h": float(centres[b, 2]), "n_stars": int(counts[b])}
               for b in np.flatnonzero(counts < s.min_stars)]
    if keep.size == 0:   # a small run (a tiny test survey): say so in the figure, do not fail
        logging.getLogger("starfm.figures").warning(
            "%s: no (Teff, logg, [M/H]) bin of the figure's settings has %d test stars with XP "
            "(counts %s): the figure says so", ds.path, s.min_stars, counts.tolist())
        return {"wavelength": wavelength_nm(), "bins": [], "n_test_stars": int(len(test)),
                "inputs": list(BIN_LABELS), "skipped": skipped, "min_stars": s.min_stars}
    use_ebv = "ln_ebv" in getattr(model, "tokens_seen", [])
    # one model call for all (bin, member) pairs: the bin centre's labels, the member's E(B-V)
    which, star = np.nonzero(member[keep])
    centre = centres[keep][which]
    given = {k: centre[:, j] for j, k in enumerate(BIN_LABELS)}
    ln_ebv = test[star, ix["ln_ebv"]]
    if use_ebv:
        given["ln_ebv"] = ln_ebv
    gen_coef = _xp_tokens(model, given)
    dust_coef = _xp_tokens(model, {"ln_ebv": ln_ebv}) if use_ebv else None

    obs_flux = xp_flux(coef[:, :tokens.N_XP], coef[:, tokens.N_XP:])
    blind_coef = _band(coef)[0]
    blind_flux = np.median(obs_flux, axis=0)
    scored = np.zeros(len(XP_TOKENS), bool)
    scored[np.r_[0:s.n_coefficients, tokens.N_XP:tokens.N_XP + s.n_coefficients]] = True
    bins = []
    for j, b in enumerate(keep):                          # a few bins (the stars are vectorised)
        rows = which == j
        c = coef[star[rows]]
        med, lo, hi = _band(c)
        scatter = 0.5 * (hi - lo)
        usable = scored & (np.isfinite(c).sum(0) >= s.min_stars_per_coefficient) & (scatter > 0)

        def paired(pred):
            """median over the bin's stars and the usable coefficients of |pred_i - obs_i| / scatter"""
            z = np.abs(np.broadcast_to(pred, c.shape) - c)[:, usable] / scatter[usable]
            return float(np.nanmedian(z)) if np.isfinite(z).any() else float("nan")

        def of_median(pred):
            """median over the usable coefficients of |median pred - observed median| / scatter"""
            z = np.abs(_band(np.atleast_2d(pred))[0] - med)[usable] / scatter[usable]
            return float(np.median(z)) if z.size else float("nan")

        f = obs_flux[star[rows]]
        # the observed flux takes an absent (irrelevant) coefficient as 0: the generated and
        # dust-only fluxes drop the coefficients most of the bin's stars lack, like for like
        absent = np.isfinite(c).mean(0) < 0.5

        def flux(pred):
            return xp_flux(*np.split(np.where(absent, 0.0, pred), 2, axis=1))
        e = {"teff": float(centres[b, 0]), "logg": float(centres[b, 1]), "m_h": float(centres[b, 2]),
             "n_stars": int(rows.sum()), "ebv_median": finite_float(np.exp(np.nanmedian(ln_ebv[rows]))),
             "n_coefficients_scored": int(usable.sum()),
             "paired_generated": paired(gen_coef[rows]), "paired_label_blind": paired(blind_coef),
             "median_generated": of_median(gen_coef[rows]), "median_label_blind": of_median(blind_coef),
             "flux": _band(f), "flux_generated": _band(flux(gen_coef[rows])),
             "flux_label_blind": blind_flux}
        if dust_coef is not None:
            e["paired_dust_only"] = paired(dust_coef[rows])
            e["median_dust_only"] = of_median(dust_coef[rows])
            e["flux_dust_only"] = _band(flux(dust_coef[rows]))[0]
        bins.append(e)
    return {"wavelength": wavelength_nm(), "bins": bins, "n_test_stars": int(len(test)),
            "inputs": list(BIN_LABELS) + (["ln_ebv"] if use_ebv else []), "skipped": skipped}


def plot_generated_vs_observed(d: dict, s: VersusObservedSettings = VersusObservedSettings()):
    pyplot = plt()
    bins = d["bins"]
    if not bins:
        fig, ax = pyplot.subplots(figsize=(8.0, 3.0), constrained_layout=True)
        ax.axis("off")
        ax.text(0.5, 0.5, "No (Teff, logg, [M/H]) bin has %d test stars with XP\n(test stars per "
                "bin: %s): nothing to compare" % (s.min_stars, ", ".join(str(b["n_stars"]) for b in d["skipped"])),
                ha="center", va="center", fontsize=11)
        fig.suptitle("Fig. 7: XP spectra generated from labels against observed spectra")
        return fig
    ncol = min(3, len(bins))
    nrow = -(-len(bins) // ncol)
    fig = pyplot.figure(figsize=(6.0 * ncol, 5.4 * nrow), constrained_layout=True)
    outer = fig.add_gridspec(nrow, ncol)
    lam = d["wavelength"]
    dusty = "ln_ebv" in d["inputs"]
    unit = 1e-21                                     # flux / F_G of these giants: ~1e-21
    for k, e in enumerate(bins):
        inner = outer[k // ncol, k % ncol].subgridspec(2, 1, height_ratios=[2.6, 1], hspace=0.0)
        ax, res = fig.add_subplot(inner[0]), fig.add_subplot(inner[1])
        (omed, olo, ohi), (gmed, glo, ghi) = (np.asarray(e[k]) / unit for k in ("flux", "flux_generated"))
        blind = e["flux_label_blind"] / unit
        dust = e["flux_dust_only"] / unit if "flux_dust_only" in e else None
        ax.fill_between(lam, olo, ohi, color="tab:blue", alpha=0.22, lw=0, label="observed 16-84 %")
        ax.plot(lam, omed, color="tab:blue", lw=1.6, label="observed median")
        ax.plot(lam, glo, color="tab:red", lw=0.6, ls="-", alpha=0.6)
        ax.plot(lam, ghi, color="tab:red", lw=0.6, ls="-", alpha=0.6, label="generated 16-84 %")
        ax.plot(lam, gmed, color="tab:red", lw=1.4, label="generated median")
        ax.plot(lam, blind, color="k", lw=0.9, ls="--", label="label-blind (all test stars)")
        if dust is not None:
            ax.plot(lam, dust, color="tab:green", lw=1.0, ls=":",
                    label="model given E(B-V) only")
        ebv = f", median E(B-V) {e['ebv_median']:.2f}" if e["ebv_median"] is not None else ""
        ax.set_title(f"$T_{{\\rm eff}}$ {e['teff']:.0f}$\\pm${s.teff_half_width:.0f} K, "
                     f"log g {e['logg']:.2f}$\\pm${s.logg_half_width:g}, "
                     f"[M/H] {e['m_h']:+.2f}$\\pm${s.m_h_half_width:g}\n"
                     f"{e['n_stars']} test stars{ebv}", fontsize=9)
        text = (f"per-star score ($\\sigma$): generated {e['paired_generated']:.2f}\n"
                + (f"E(B-V) only {e['paired_dust_only']:.2f}\n" if "paired_dust_only" in e else "")
                + f"label-blind {e['paired_label_blind']:.2f}")
        ax.text(0.97, 0.05, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=8,
                bbox=dict(fc="white", alpha=0.85, lw=0))
        ax.set_ylabel(r"flux / $F_G$ [10$^{-21}$ W m$^{-2}$ nm$^{-1}$ / (e$^-$ s$^{-1}$)]", fontsize=8)
        ax.tick_params(labelbottom=False)
        if k == 0:
            ax.legend(fontsize=7.5, loc="upper left")
        scatter = 0.5 * (ohi - olo)
        sc = np.where(scatter > 0, scatter, np.nan)
        res.axhspan(-1, 1, color="tab:blue", alpha=0.15, lw=0)
        res.axhline(0, color="tab:blue", lw=1.0)
        res.plot(lam, (gmed - omed) / sc, color="tab:red", lw=1.2)
        res.plot(lam, (blind - omed) / sc, color="k", lw=0.9, ls="--")
        if dust is not None:
            res.plot(lam, (dust - omed) / sc, color="tab:green", lw=1.0, ls=":")
        res.set_ylim(-3, 3)
        res.set_xlim(lam.min(), lam.max())
        ax.set_xlim(lam.min(), lam.max())
        res.set_xlabel(r"$\lambda$ [nm]")
        res.set_ylabel("(median - obs.\nmedian) / obs. $\\sigma$", fontsize=8)
    fig.suptitle("Fig. 7: XP spectra generated from labels (bin centre's Teff, logg, [M/H]"
                 + (", each star's E(B-V)" if dusty else "")
                 + ") against the observed spectra of the bin's test stars")
    return fig


def build_generated_vs_observed(inputs, settings):
    d = prepare_generated_vs_observed(inputs.ds, inputs.model, settings)
    keys = ("teff", "logg", "m_h", "n_stars", "ebv_median", "n_coefficients_scored",
            "paired_generated", "paired_dust_only", "paired_label_blind",
            "median_generated", "median_dust_only", "median_label_blind")
    bins = [{k: e[k] for k in keys if k in e} for e in d["bins"]]
    numbers = {"inputs": d["inputs"], "n_test_stars": d["n_test_stars"], "n_bins": len(bins),
               "n_coefficients": settings.n_coefficients,
               "min_stars_per_coefficient": settings.min_stars_per_coefficient,
               "bins": bins, "skipped": d["skipped"]}
    for key in keys[6:]:
        vals = [b[key] for b in bins if key in b]
        if vals:
            numbers[f"{key}_over_bins"] = finite_float(np.nanmedian(vals))
    numbers["n_bins_generated_better"] = {
        how: int(sum(b[f"{how}_generated"] < b[f"{how}_label_blind"] for b in bins))
        for how in ("paired", "median")}
    return plot_generated_vs_observed(d, settings), numbers
