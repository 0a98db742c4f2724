"""The mock survey's 2MASS photometry: absolute J, H, K of the model giants and their extinction.

H from a blackbody at 10 pc (2MASS zero-point flux densities of Cohen et al. 2003); J-K from the
giant colour-Teff relation of Gonzalez Hernandez & Bonifacio (2009); J-H = 0.78 (J-K).
Extinction in each band: the injected law at the band's effective wavelength.
"""
from __future__ import annotations

import numpy as np

from starfm.mock import spectra

# 2MASS effective wavelengths [nm] and zero-point flux densities [W m^-2 nm^-1] (Cohen et al. 2003)
TWOMASS_WAVELENGTH_NM = {"J": 1235.0, "H": 1662.0, "K": 2159.0}
TWOMASS_ZERO_FLUX = {"J": 3.129e-12, "H": 1.133e-12, "K": 4.283e-13}


def twomass_absolute(teff, radius_rsun, m_h):
    """Absolute J, H, K (2MASS): H from a blackbody at 10 pc; J-K from the giant colour-Teff
    relation of Gonzalez Hernandez & Bonifacio (2009); J-H = 0.78 (J-K)."""
    flux_h = spectra.blackbody_flux([TWOMASS_WAVELENGTH_NM["H"]], teff, radius_rsun,
                                    np.full(len(teff), 0.01))[:, 0].astype(float)
    abs_h = -2.5 * np.log10(flux_h / TWOMASS_ZERO_FLUX["H"])
    # theta = 0.6517 + 0.6312 X + 0.0168 X^2 - 0.0381 X [Fe/H] + 0.0256 [Fe/H] + 0.0013 [Fe/H]^2
    theta = 5040.0 / teff
    a, b = 0.0168, 0.6312 - 0.0381 * m_h
    c = 0.6517 + 0.0256 * m_h + 0.0013 * m_h ** 2 - theta
    j_k = (-b + np.sqrt(b ** 2 - 4 * a * c)) / (2 * a)
    j_h = 0.78 * j_k
    return abs_h + j_h, abs_h, abs_h + j_h - j_k


def twomass_extinction(r_v: float = spectra.R_V) -> dict[str, float]:
    """A_band / A_V of the injected law (F99 of ``r_v``) for J, H, K."""
    return {b: spectra.extinction_curve([TWOMASS_WAVELENGTH_NM[b]], r_v)[0] for b in "JHK"}
