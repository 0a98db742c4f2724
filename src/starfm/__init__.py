"""starfm: a transformer foundation model for red giants from Gaia XP, APOGEE and DistMass."""

__version__ = "0.1.0"
