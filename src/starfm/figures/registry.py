"""The paper's figures (Zhang et al. 2026 numbering): THE one list of figure names.

Pure data, no imports: ``workflow/rules/figures.smk`` loads this file by path to generate one
rule per figure, and :mod:`starfm.figures` dispatches on it. Each entry:

- ``module``: the module of :mod:`starfm.figures` with the figure's ``prepare_*`` / ``plot_*`` pair;
- ``build``: the name of that module's function ``(inputs, settings) -> (figure, numbers)``;
- ``settings``: the name of that module's frozen settings dataclass, mirroring ``figures.<name>``
  of the config schema (absent: the figure has no settings);
- ``inputs``: which workflow files the figure reads (``dataset``, ``model``, ``predictions``,
  ``metrics``); a figure's rule depends on these only, so retraining does not redraw Fig. 1;
- ``extra_outputs``: files the figure writes besides its PNG, PDF, numbers JSON and caption,
  relative to the results directory;
- ``library``: True where the figure applies to a library-mode run (real APOGEE giants: no mass,
  no parallax, no truth).

A figure's name is written here only: the figures stage, the Snakemake rules, the report's
run-time table and the tests all derive from this dict. Adding a figure: a module with its
``prepare_*``, ``plot_*`` and build function, an entry here, a caption template
``workflow/report/<name>.rst``, and its section ``figures.<name>`` in the schema (with the
settings class's defaults, tests/test_figures.py checks) and config.yaml.
"""

FIGURES = {
    "fig01_training_set": {"module": "training_set", "build": "build_training_set", "inputs": ["dataset"]},
    "fig02_mass_age_mh": {"module": "training_set", "build": "build_mass_age_mh", "inputs": ["dataset"]},
    "fig04_atmospheric_parameters": {"library": True, "module": "spectra_to_labels", "build": "build_atmospheric_parameters", "inputs": ["predictions"]},
    "fig05_mass_age": {"library": True, "module": "spectra_to_labels", "build": "build_mass_age", "inputs": ["predictions"]},
    "fig06_physical_validation": {"module": "physical_validation", "build": "build",
                                  "inputs": ["dataset", "model", "predictions"]},
    "fig07_generated_spectra": {"module": "generated_spectra", "build": "build", "settings": "Settings", "inputs": ["dataset", "model"]},
    # Fig. 7 for real stars (the isochrone figure needs mass and age): spectra generated from
    # labels against the observed spectra of test stars with those labels
    "fig07_generated_vs_observed": {"library": True, "module": "generated_spectra", "build": "build_generated_vs_observed",
                                    "settings": "VersusObservedSettings", "inputs": ["dataset", "model"]},
    "fig08_reconstructed_spectra": {"module": "reconstruction", "build": "build_reconstructed_spectra", "settings": "Settings", "inputs": ["dataset", "model"]},
    "fig09_fractional_residual": {"module": "reconstruction", "build": "build_fractional_residual", "settings": "Settings", "inputs": ["dataset", "model"]},
    "fig10_rmse_vs_astrometry": {"module": "reconstruction", "build": "build_rmse_vs_astrometry", "settings": "Settings", "inputs": ["dataset", "model"]},
    "fig11_rmse_parameter_space": {"module": "reconstruction", "build": "build_rmse_parameter_space", "settings": "Settings", "inputs": ["dataset", "model"]},
    "fig12_bp_rp_inpainting": {"library": True, "module": "inpainting", "build": "build", "settings": "Settings", "inputs": ["dataset", "model"]},
    "fig13_kiel_grid": {"module": "grids", "build": "build_kiel_grid", "settings": "KielSettings", "inputs": ["dataset", "model"]},
    "fig14_mass_age_self_consistency": {"module": "grids", "build": "build_self_consistency", "settings": "SelfConsistencySettings", "inputs": ["dataset", "model"]},
    "fig15_age_metallicity": {"module": "grids", "build": "build_age_metallicity", "settings": "AgeMetallicitySettings", "inputs": ["dataset", "model"]},
    "fig16_extinction_curve": {"module": "extinction", "build": "build", "inputs": ["dataset", "model"],
                               "extra_outputs": ["evaluation/extinction_curve.json"]},
    "fig17_cross_attention": {"module": "attention", "build": "build", "settings": "Settings", "inputs": ["dataset", "model"]},
    "fig18_unseen_colours": {"module": "unseen_colours", "build": "build", "inputs": ["dataset", "model"]},
    "fig19_rp0_vs_xgboost": {"library": True, "module": "rp0_xgboost", "build": "build", "settings": "Settings", "inputs": ["dataset", "model"]},
}

FIGURE_NAMES = list(FIGURES)


def figure_number(name: str) -> int:
    """``fig07_generated_spectra`` -> 7."""
    return int(name[3:5])

# The figures a library-mode run draws (real stars: no mass, no parallax, no mock truth; the
# others need mass, the pseudo-luminosity, E(B-V) maps or truth): entries with "library": True.
LIBRARY_FIGURES = [name for name, entry in FIGURES.items() if entry.get("library")]
