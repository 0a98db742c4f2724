"""starfm: a transformer foundation model for red giants from Gaia XP, APOGEE and DistMass."""

__version__ = "0.1.0"


def load(path, device: str = "cpu"):
    """Load a trained model: ``starfm.load("results/model/model.pt")`` -> :class:`starfm.api.Model`
    with ``predict`` / ``generate`` / ``inpaint`` (see the README, "Using the model")."""
    from starfm.api import load as _load
    return _load(path, device)
