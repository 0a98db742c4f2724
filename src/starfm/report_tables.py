"""The report's summary page: the metrics of every input setting, the configuration, the run times.

``python -m starfm report-tables --metrics metrics.json --benchmark B.tsv ... --numbers F.json ...
--out summary.html --settings '<config as JSON>'`` writes one self-contained HTML page that the
Snakemake report embeds (category "Summary"):

- metrics: scatter, bias and z-score std per label for the transformer and XGBoost, one block per
  input setting of ``metrics.json``'s ``settings`` (the top-level entries when it has none),
  against the catalogue labels and, where known, the truth;
- the configuration of the run (what ``--settings`` holds: Snakemake's config);
- run times: wall and CPU seconds and peak memory of every job with a benchmark file, and the
  seconds each figure's drawing took (its numbers JSON).
"""
from __future__ import annotations

import html
import json
import logging
from pathlib import Path

from starfm import tokens
from starfm.cli_common import json_object, run_cli, setup_logging, stage_parser
from starfm.errors import StarfmInputError
from starfm.tables import atomic_path

log = logging.getLogger("starfm.report_tables")

LABELS = tokens.TARGETS
UNITS = tokens.TARGET_UNITS
FORMATS = tokens.TARGET_FORMATS
STYLE = ("body{font-family:sans-serif;font-size:13px} table{border-collapse:collapse;margin:6px 0 18px}"
         "td,th{border:1px solid #bbb;padding:2px 7px;text-align:right} th{background:#eee}"
         "td.l,th.l{text-align:left} pre{background:#f6f6f6;padding:8px;font-size:12px}")


def _fmt(x, spec):
    return "-" if not isinstance(x, (int, float)) or x != x else format(x, spec)


def metric_settings(metrics: dict) -> dict[str, dict]:
    """{setting name: {"inputs": [...], "transformer": {...}, "xgboost": {...}, "truth": {...}}}."""
    if isinstance(metrics.get("settings"), dict) and metrics["settings"]:
        return metrics["settings"]
    return {"as evaluated": {"inputs": metrics.get("transformer_inputs"),
                             "xgboost_inputs": metrics.get("xgboost_inputs"),
                             "transformer": metrics.get("transformer", {}),
                             "xgboost": metrics.get("xgboost", {}),
                             "truth": metrics.get("truth")}}


def metrics_html(metrics: dict) -> str:
    rows = []
    head = ("<tr><th class=l>setting</th><th class=l>against</th><th class=l>label</th>"
            "<th>transformer scatter</th><th>bias</th><th>z std</th><th>z robust std</th><th>n</th>"
            "<th>XGBoost scatter</th><th>bias</th><th>n</th></tr>")
    inputs = []
    for name, s in metric_settings(metrics).items():
        for against, block in (("catalogue", s), ("truth", s.get("truth") or {})):
            tf, xgb = block.get("transformer") or {}, block.get("xgboost") or {}
            for label in LABELS:
                t, x = tf.get(label), xgb.get(label)
                if t is None and x is None:
                    continue
                t, x, f = t or {}, x or {}, FORMATS[label]
                rows.append(
                    f"<tr><td class=l>{html.escape(name)}</td><td class=l>{against}</td>"
                    f"<td class=l>{label} [{UNITS[label]}]</td><td>{_fmt(t.get('scatter'), f)}</td>"
                    f"<td>{_fmt(t.get('bias'), f)}</td><td>{_fmt(t.get('zscore_std'), '.2f')}</td>"
                    f"<td>{_fmt(t.get('zscore_robust_std'), '.2f')}</td><td>{t.get('n', '-')}</td>"
                    f"<td>{_fmt(x.get('scatter'), f)}</td><td>{_fmt(x.get('bias'), f)}</td>"
                    f"<td>{x.get('n', '-')}</td></tr>")
        for who, listed in (("", s.get("inputs")), (" (XGBoost)", s.get("xgboost_inputs"))):
            if listed:
                inputs.append(f"<li><b>{html.escape(name)}</b>{who} ({len(listed)} tokens): "
                              f"{html.escape(', '.join(map(str, listed)))}</li>")
    n_test = metrics.get("n_test", "?")
    return (f"<h2>Metrics on the test split ({n_test} stars)</h2><p>scatter = 1.4826 MAD and bias = "
            "median of prediction - label (natural units, age in Gyr); z = (mean - label) / "
            "sqrt(sigma_pred^2 + sigma_label^2) in token space. A dash: not evaluated for that "
            f"model.</p><table>{head}{''.join(rows)}</table><p>Inputs per setting:</p><ul>"
            f"{''.join(inputs)}</ul>")


def read_benchmark(path: Path) -> dict | None:
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    head, values = lines[0].split("\t"), lines[-1].split("\t")
    row = dict(zip(head, values))
    try:
        return {"s": float(row["s"]), "cpu_time": float(row.get("cpu_time", "nan")),
                "max_rss": float(row.get("max_rss", "nan"))}
    except (KeyError, ValueError):
        raise StarfmInputError(f"{path}: not a Snakemake benchmark file (columns {head})")


def runtimes_html(benchmarks: list[Path], numbers: list[Path]) -> str:
    rows, total = [], 0.0
    for path in benchmarks:
        b = read_benchmark(Path(path))
        if b is None:
            continue
        name = Path(path).stem if Path(path).parent.name != "figures" else f"figure {Path(path).stem}"
        total += b["s"]
        rows.append(f"<tr><td class=l>{html.escape(name)}</td><td>{b['s']:.1f}</td>"
                    f"<td>{_fmt(b['cpu_time'], '.1f')}</td><td>{_fmt(b['max_rss'], '.0f')}</td></tr>")
    fig_rows, fig_total = [], 0.0
    for path in numbers:
        d = json.loads(Path(path).read_text())
        fig_total += d.get("seconds") or 0.0
        fig_rows.append(f"<tr><td class=l>{html.escape(str(d.get('figure', Path(path).stem)))}</td>"
                        f"<td>{_fmt(d.get('seconds'), '.1f')}</td></tr>")
    return ("<h2>Run times</h2><p>Per job (Snakemake benchmark: wall seconds, CPU seconds, peak "
            f"resident memory in MB); sum of the jobs' wall times {total:.0f} s (jobs run in "
            "parallel, so the run took less).</p><table><tr><th class=l>job</th><th>wall [s]</th>"
            f"<th>CPU [s]</th><th>max RSS [MB]</th></tr>{''.join(rows)}</table>"
            "<p>Drawing time of each figure inside its job (without start-up and imports): total "
            f"{fig_total:.0f} s.</p><table><tr><th class=l>figure</th><th>seconds</th></tr>"
            f"{''.join(fig_rows)}</table>")


def config_html(config: dict) -> str:
    import yaml
    text = yaml.safe_dump(config, sort_keys=False, default_flow_style=None, width=100)
    return f"<h2>Configuration of this run</h2><pre>{html.escape(text)}</pre>"


def write_summary(metrics, out, config: dict | None = None, benchmarks=(), numbers=()) -> Path:
    path = Path(metrics)
    if not path.exists():
        raise StarfmInputError(f"{path}: file not found")
    try:
        m = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StarfmInputError(f"{path}: not valid JSON ({exc})") from exc
    body = metrics_html(m) + config_html(config or {}) + runtimes_html(list(benchmarks), list(numbers))
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>starfm summary</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>\n")
    with atomic_path(out) as tmp:
        Path(tmp).write_text(page)
    log.info("wrote %s", out)
    return Path(out)


@run_cli
def cli(argv=None) -> int:
    parser = stage_parser("report-tables", "The report's summary page: metrics of every input "
                          "setting, the configuration and the run times, as one HTML file.")
    parser.add_argument("--metrics", required=True, help="metrics.json from the evaluate stage")
    parser.add_argument("--benchmark", nargs="*", default=[], help="Snakemake benchmark TSVs")
    parser.add_argument("--numbers", nargs="*", default=[], help="figure numbers JSONs")
    parser.add_argument("--out", required=True, help="HTML file to write")
    parser.add_argument("--settings", default="{}", help="the run's configuration as a JSON object")
    args = parser.parse_args(argv)
    setup_logging(args.log, args.verbose)
    write_summary(args.metrics, args.out, json_object(args.settings, "--settings"), args.benchmark,
                  args.numbers)
    return 0
