"""Constants more than one part of starfm needs, defined once.

Constants owned by one concept live with it instead: the token vocabulary in
:mod:`starfm.tokens`, the G-band flux zero point in :mod:`starfm.xp_flux`, the archive's XP
formats in :mod:`starfm.archive_formats`, the Combined19 grid in :mod:`starfm.dust_map`.
"""
from __future__ import annotations

# APOGEE DR17 files (SDSS SAS names; the mock survey writes the same names)
ALLSTAR_NAME = "allStar-dr17-synspec_rev1.fits"
DISTMASS_NAME = "APOGEE_DistMass-DR17_v1.6.1.fits"

# Extinction: E(B-V)_true = 0.884 E(B-V)_SFD (Schlafly & Finkbeiner 2011; Leung & Bovy 2024 eq. 10),
# A(lambda) = R_V * E(B-V)_true * F99(lambda)/A_V; the mock survey injects this law.
EBV_TRUE_OVER_SFD = 0.884
R_V = 3.1
EXTINCTION_LAW = "dust_extinction.parameter_averages.F99(Rv=3.1)"
