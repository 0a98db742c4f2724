"""Fig. 7: XP spectra the model generates from parameters, along the model's own isochrones.

The paper takes (Teff, logg) for each (mass, age, [M/H]) from MIST isochrones; we have no
isochrone grid, so the isochrone is the model's own: it is asked for Teff and logg given mass,
ln age, [M/H] and the low-extinction reference E(B-V) (:func:`starfm.extinction_curve.reference_ebv`), and then
for the 110 XP coefficients and the pseudo-luminosity given all six. Coefficients become fluxes
through GaiaXPy's calibration (:func:`starfm.figures.common.xp_flux`, 336-1020 nm). The tokens
are coefficients / F_G; the flux at 10 pc is restored from the pseudo-luminosity L = parallax
10^(G/5): at 10 pc (parallax 100 mas) G = 5 log10(L / 100).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from starfm import tokens
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
