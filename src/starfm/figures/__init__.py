"""The paper's figures (Zhang et al. 2026 numbering), one rule and one job per figure.

:mod:`starfm.figures.registry` holds THE list of figures (:data:`FIGURE_NAMES`; the workflow
generates one rule per entry from it). Each figure lives in a module with a ``prepare_*``
(numbers) and ``plot_*`` (drawing) pair; :mod:`starfm.figures.common` has the shared helpers and
:mod:`starfm.figures.stage` the command line (``python -m starfm figures --figure NAME ...``),
which writes the PNG, the PDF, a JSON of the figure's measured numbers and the report caption
rendered from ``workflow/report/<name>.rst`` with those numbers.
"""
from starfm.figures.registry import FIGURE_NAMES, FIGURES, figure_number
from starfm.figures.stage import cli, make_figure, make_figures

__all__ = ["FIGURES", "FIGURE_NAMES", "cli", "figure_number", "make_figure", "make_figures"]
