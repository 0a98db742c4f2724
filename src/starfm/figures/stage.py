"""The figures stage: one figure per call (``python -m starfm figures --figure NAME``).

Writes the figure as PNG and PDF, ``--numbers`` (a JSON of what the figure measured, the numbers
its caption quotes) and, with ``--caption-template``, the report caption: the template
(``workflow/report/<name>.rst``, Jinja2) rendered with ``numbers`` (filter ``f``: ``{{ n.x | f('.3f') }}``
prints "n/a" for a missing number). Snakemake's report takes that rendered file as the caption,
so captions state the run's own numbers.
"""
from __future__ import annotations

import importlib
import json
import logging
import math
import time
from pathlib import Path

from starfm.cli_common import json_object, run_cli, setup_logging, stage_parser
from starfm.figures.common import FigureInputs, NoSettings, parse_settings, save
from starfm.figures.registry import FIGURE_NAMES, FIGURES
from starfm.errors import StarfmInputError
from starfm.tables import atomic_path, json_safe

log = logging.getLogger("starfm.figures")


def figure_module(name: str):
    if name not in FIGURES:
        raise StarfmInputError(f"unknown figure '{name}'; known: {', '.join(FIGURE_NAMES)}")
    return importlib.import_module(f"starfm.figures.{FIGURES[name]['module']}")


def figure_builder(name: str):
    """The figure's build function ``(inputs, settings) -> (figure, numbers)`` (registry ``build``)."""
    return getattr(figure_module(name), FIGURES[name]["build"])


def figure_settings(name: str) -> type:
    """The figure's settings dataclass (registry ``settings``; NoSettings when it has none)."""
    entry = FIGURES[name]
    return getattr(figure_module(name), entry["settings"]) if "settings" in entry else NoSettings


def render_caption(template: str, numbers: dict, source: str = "caption template") -> str:
    """Render a caption template (Jinja2) with ``n`` = the figure's numbers."""
    import jinja2

    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)

    def fmt(value, spec=".3g"):
        return format(value, spec) if number(value) else "n/a"

    env = jinja2.Environment(undefined=jinja2.ChainableUndefined, autoescape=False)
    env.filters["f"] = fmt
    env.filters["pct"] = lambda v, d=1: f"{100 * v:.{d}f} %" if number(v) else "n/a"
    try:
        return env.from_string(template).render(n=numbers)
    except jinja2.TemplateError as exc:
        raise StarfmInputError(f"{source}: cannot render ({exc})") from exc


def make_figure(name: str, inputs: FigureInputs, png, pdf=None, numbers_path=None,
                caption_template=None, caption_path=None, extra_outputs=(), settings=None) -> dict:
    """Draw one figure; return its numbers. ``settings``: the figure's JSON object (or None)."""
    s = parse_settings(figure_settings(name), json_object(settings or {}, "--settings"), name)
    start = time.perf_counter()
    kwargs = {"extra_outputs": list(extra_outputs)} if FIGURES[name].get("extra_outputs") else {}
    fig, numbers = figure_builder(name)(inputs, s, **kwargs)
    save(fig, Path(png), Path(pdf) if pdf else None)
    numbers = json_safe({"figure": name, **numbers, "seconds": round(time.perf_counter() - start, 2)})
    if numbers_path:
        with atomic_path(numbers_path) as tmp:
            Path(tmp).write_text(json.dumps(numbers, indent=2) + "\n")
    if caption_template and caption_path:
        text = Path(caption_template).read_text()
        with atomic_path(caption_path) as tmp:
            Path(tmp).write_text(render_caption(text, numbers, str(caption_template)))
    log.info("%s: %.1f s", name, numbers["seconds"])
    return numbers


def make_figures(dataset, model, predictions, out_dir, names=None, settings=None,
                 caption_dir=None) -> list[Path]:
    """Every figure (or ``names``) into ``out_dir`` as <name>.png/.pdf/.json; returns the PNG paths.

    For Python callers and tests; the workflow runs one :func:`make_figure` per job.
    """
    out_dir = Path(out_dir)
    inputs = FigureInputs(dataset, model, predictions)
    paths = []
    for name in names or FIGURE_NAMES:
        png = out_dir / f"{name}.png"
        extra = [out_dir / Path(p).name for p in FIGURES[name].get("extra_outputs", [])]
        template = Path(caption_dir) / f"{name}.rst" if caption_dir else None
        make_figure(name, inputs, png, out_dir / f"{name}.pdf", out_dir / f"{name}.json",
                    template, out_dir / f"{name}.rst" if template else None, extra,
                    (settings or {}).get(name))
        paths.append(png)
    return paths


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("figures", "Draw one of the paper's figures (Zhang et al. 2026 "
                          "numbering) as a 150 dpi PNG and a PDF, with a JSON of its numbers.")
    parser.add_argument("--figure", required=True, choices=FIGURE_NAMES, metavar="NAME",
                        help="which figure: " + ", ".join(FIGURE_NAMES))
    parser.add_argument("--dataset", help="dataset.h5 from the assemble stage")
    parser.add_argument("--model", help="model.pt from the train stage")
    parser.add_argument("--predictions", help="predictions.h5 from the evaluate stage")
    parser.add_argument("--png", required=True, help="PNG to write")
    parser.add_argument("--pdf", help="PDF to write")
    parser.add_argument("--numbers", help="JSON of the figure's measured numbers to write")
    parser.add_argument("--caption-template", help="workflow/report/<name>.rst (Jinja2)")
    parser.add_argument("--caption", help="rendered caption (.rst) to write")
    parser.add_argument("--extra-output", action="append", default=[],
                        help="further outputs the figure writes (registry 'extra_outputs', in order)")
    parser.add_argument("--settings", default="{}", help="the figure's settings as a JSON object")
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    needed = FIGURES[args.figure]["inputs"]
    missing = [k for k in needed if getattr(args, k) is None]
    if missing:
        raise StarfmInputError(f"figure {args.figure} needs --{' --'.join(missing)}")
    wanted = FIGURES[args.figure].get("extra_outputs", [])
    if len(args.extra_output) != len(wanted):
        raise StarfmInputError(f"figure {args.figure} writes {len(wanted)} extra output(s) "
                               f"({wanted}); got --extra-output {args.extra_output}")
    inputs = FigureInputs(args.dataset, args.model, args.predictions)
    make_figure(args.figure, inputs, args.png, args.pdf, args.numbers, args.caption_template,
                args.caption, args.extra_output, args.settings)
    return 0
