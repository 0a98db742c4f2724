"""The paper's figures (Zhang et al. 2026 numbering): THE one list of figure names.

Pure data, no imports: ``workflow/rules/figures.smk`` loads this file by path to generate one
rule per figure, and :mod:`starfm.figures` dispatches on it. Each entry:

- ``module``: the module of :mod:`starfm.figures` with the figure's ``prepare_*`` / ``plot_*`` pair
  and its ``build(inputs, settings)``;
- ``inputs``: which workflow files the figure reads (``dataset``, ``model``, ``predictions``,
  ``metrics``); a figure's rule depends on these only, so retraining does not redraw Fig. 1;
- ``extra_outputs``: files the figure writes besides its PNG, PDF, numbers JSON and caption,
  relative to the results directory.

Adding a figure: a module with ``build``, an entry here, a caption template
``workflow/report/<name>.rst`` and (optionally) settings under ``figures.<name>`` in config.yaml.
"""

FIGURES = {
    "fig01_training_set": {"module": "training_set", "inputs": ["dataset"]},
    "fig02_mass_age_mh": {"module": "training_set", "inputs": ["dataset"]},
    "fig04_atmospheric_parameters": {"module": "spectra_to_labels", "inputs": ["predictions"]},
    "fig05_mass_age": {"module": "spectra_to_labels", "inputs": ["predictions"]},
    "fig06_physical_validation": {"module": "physical_validation",
                                  "inputs": ["dataset", "model", "predictions"]},
    "fig07_generated_spectra": {"module": "generated_spectra", "inputs": ["dataset", "model"]},
    "fig08_reconstructed_spectra": {"module": "reconstruction", "inputs": ["dataset", "model"]},
    "fig09_fractional_residual": {"module": "reconstruction", "inputs": ["dataset", "model"]},
    "fig10_rmse_vs_astrometry": {"module": "reconstruction", "inputs": ["dataset", "model"]},
    "fig11_rmse_parameter_space": {"module": "reconstruction", "inputs": ["dataset", "model"]},
    "fig12_bp_rp_inpainting": {"module": "inpainting", "inputs": ["dataset", "model"]},
    "fig13_kiel_grid": {"module": "grids", "inputs": ["dataset", "model"]},
    "fig14_mass_age_self_consistency": {"module": "grids", "inputs": ["dataset", "model"]},
    "fig15_age_metallicity": {"module": "grids", "inputs": ["dataset", "model"]},
    "fig16_extinction_curve": {"module": "extinction", "inputs": ["dataset", "model"],
                               "extra_outputs": ["evaluation/extinction_curve.json"]},
    "fig17_cross_attention": {"module": "attention", "inputs": ["dataset", "model"]},
    "fig18_unseen_colours": {"module": "unseen_colours", "inputs": ["dataset", "model"]},
    "fig19_rp0_vs_xgboost": {"module": "rp0_xgboost", "inputs": ["dataset", "model"]},
}

FIGURE_NAMES = list(FIGURES)


def figure_number(name: str) -> int:
    """``fig07_generated_spectra`` -> 7."""
    return int(name[3:5])

# Figures a library-mode run (real stars: no mass, no parallax, no mock truth) draws; the others
# need mass, the pseudo-luminosity, E(B-V) maps or truth. figures.smk filters FIGURE_NAMES by it.
LIBRARY_FIGURES = ["fig04_atmospheric_parameters", "fig05_mass_age", "fig07_generated_spectra",
                   "fig12_bp_rp_inpainting", "fig19_rp0_vs_xgboost"]
