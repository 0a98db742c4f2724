"""The workflow's shape: thin rules, one conda env per kind of rule that lists what the rule's
stage imports (pinned), a config schema that rejects bad values with the key named, and a
``--help`` for every stage."""
from __future__ import annotations

import ast
import re
import textwrap
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from starfm.__main__ import STAGES
from starfm.figures.registry import FIGURE_NAMES

ROOT = Path(__file__).resolve().parents[1]
RULES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))

# import name -> distribution name as written in the env files
DIST_NAME = {
    "yaml": "pyyaml", "zero_point": "gaiadr3-zeropoint", "xgboost": "xgboost-cpu",
    "dust_extinction": "dust_extinction", "sklearn": "scikit-learn",
}
STDLIB = set(sys.stdlib_module_names)
# a rule's stage call
STAGE_CALL = r"python -m starfm ([\w-]+)"
# stage packages whose command dispatches to any of their modules at run time
STAGE_PACKAGES = {"starfm.figures"}


def _rules():
    """(rule name, text) of every rule in the rule files; a rule generated in a loop
    (``rule:`` with ``name: f"figure_{_name}"``) counts once, under its name pattern."""
    out = []
    for path in RULES:
        text = path.read_text()
        # top-level rules, and rules indented under a mode switch (``if MODE == "library":``)
        for m in re.finditer(r"^([ \t]*)rule (\w+):\n((?:\1[ \t]+.*\n|\n)*)", text, flags=re.M):
            out.append((m.group(2), textwrap.dedent(m.group(3)), path))
        for m in re.finditer(r"^( +)rule:\n((?:\1[ \t]+.*\n|\n)*)", text, flags=re.M):
            name = re.search(r"name:\s*\n\s*f?\"([^\"]+)\"", m.group(2)).group(1)
            out.append((name, textwrap.dedent(m.group(2)), path))
    return out


def _module_path(module: str) -> Path:
    """Source file of a starfm module or package (its ``__init__.py``)."""
    base = ROOT / "src" / module.replace(".", "/")
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _stage_modules(module: str, seen=None) -> set[str]:
    """starfm modules imported (transitively, anywhere in the file) by ``module``; importing
    ``a.b.c`` imports the packages ``a.b`` too."""
    seen = set() if seen is None else seen
    if module in seen:
        return seen
    seen.add(module)
    if module in STAGE_PACKAGES:      # a stage package (starfm.figures): all its modules
        package = ROOT / "src" / module.replace(".", "/")
        for sub in sorted(package.glob("*.py")):
            _stage_modules(module + ("" if sub.stem == "__init__" else f".{sub.stem}"), seen)
        return seen
    for node in ast.walk(ast.parse(_module_path(module).read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "starfm" or node.module.startswith("starfm."):   # from pkg import module
                names += [f"{node.module}.{a.name}" for a in node.names
                          if _module_path(f"{node.module}.{a.name}").exists()]
        for name in names:
            if name.startswith("starfm."):
                parts = name.split(".")
                for i in range(2, len(parts)):
                    _stage_modules(".".join(parts[:i]), seen)
                _stage_modules(name, seen)
    return seen


def _third_party_imports(modules: set[str]) -> set[str]:
    found = set()
    for module in modules:
        for node in ast.walk(ast.parse(_module_path(module).read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                found.add(str(node.args[0].value).split(".")[0])     # importlib.import_module("x.y")
    return {n for n in found if n not in STDLIB and n not in ("starfm", "__future__")}


def _env_packages(env_file: Path) -> dict[str, str]:
    """package -> pinned version from a conda env file (conda and pip sections)."""
    env = yaml.safe_load(env_file.read_text())
    pins = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(==|=)\s*([0-9][^\s]*)$", item)
            assert m, f"{env_file.name}: '{item}' is not pinned to one version"
            pins[m.group(1).lower()] = m.group(3)
    return pins


def test_every_rule_is_thin_and_calls_one_stage():
    rules = _rules()
    assert len(rules) >= 10
    for name, body, path in rules:
        shell = re.search(r"shell:\s*\n((?:\s+\".*\"\n?)+)", body)
        assert shell, f"{path.name}: rule {name} has no shell command"
        stages = re.findall(STAGE_CALL, shell.group(1))
        assert len(stages) == 1, f"rule {name} must call exactly one stage, got {stages}"
        assert stages[0] in STAGES, f"rule {name} calls unknown stage {stages[0]}"
        assert "log:" in body, f"rule {name} has no log"
        assert "conda:" in body, f"rule {name} has no conda env"


@pytest.mark.parametrize("rule", [r for r in _rules()], ids=lambda r: r[0])
def test_conda_env_lists_what_the_stage_imports(rule):
    name, body, path = rule
    env_rel = re.search(r"conda:\s*\n\s*\"(.+?)\"", body).group(1)
    env_file = (path.parent / env_rel).resolve()
    assert env_file.exists(), f"rule {name}: env {env_file} missing"
    pins = _env_packages(env_file)
    stage = re.search(STAGE_CALL, body).group(1)
    module = STAGES[stage][0].split(":")[0]
    needed = _third_party_imports(_stage_modules(module))
    missing = sorted(DIST_NAME.get(n, n).lower() for n in needed
                     if DIST_NAME.get(n, n).lower() not in pins)
    assert not missing, f"rule {name} ({module}) imports {missing} not pinned in {env_file.name}"


def test_env_pins_agree_with_each_other():
    versions: dict[str, set[str]] = {}
    for env_file in (ROOT / "workflow" / "envs").glob("*.yaml"):
        for pkg, ver in _env_packages(env_file).items():
            versions.setdefault(pkg, set()).add(ver)
    clash = {p: v for p, v in versions.items() if len(v) > 1}
    assert not clash, f"one package pinned to several versions across envs: {clash}"


def test_torch_pin_matches_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.13.0"' in pyproject
    for env_file in (ROOT / "workflow" / "envs").glob("*.yaml"):
        pins = _env_packages(env_file)
        if "torch" in pins:
            assert pins["torch"] == "2.13.0", env_file.name


def _validate(config):
    from snakemake.utils import validate
    validate(config, str(ROOT / "src" / "starfm" / "config.schema.yaml"))
    return config


def test_default_config_is_valid_and_schema_fills_defaults():
    config = _validate(yaml.safe_load((ROOT / "config.yaml").read_text()))
    assert config["cuts"]["mass"] == [0.5, 4.0]
    empty = _validate({})
    assert empty["mode"] == "mock" and empty["dust"]["n_samples"] == 1000


@pytest.mark.parametrize("patch, key", [
    ({"mock": {"n_stars": "many"}}, "n_stars"),
    ({"mock": {"n_stars": 3}}, "n_stars"),
    ({"mode": "fake"}, "mode"),
    ({"cuts": {"mass": [0.5]}}, "mass"),
    ({"gaia": {"batch_size": 6000}}, "batch_size"),
    ({"cutz": {}}, "cutz"),
])
def test_bad_config_names_the_key(patch, key):
    from snakemake.exceptions import WorkflowError
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for section, value in patch.items():
        if isinstance(value, dict) and isinstance(config.get(section), dict):
            config[section].update(value)
        else:
            config[section] = value
    with pytest.raises(WorkflowError) as err:
        _validate(config)
    assert key in str(err.value)


def test_every_stage_has_a_helpful_help():
    for stage in STAGES:
        out = subprocess.run([sys.executable, "-m", "starfm", stage, "--help"],
                             capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, f"{stage} --help failed: {out.stderr[-500:]}"
        assert "usage:" in out.stdout and "--log" in out.stdout, stage
    top = subprocess.run([sys.executable, "-m", "starfm", "--help"], capture_output=True, text=True)
    assert all(stage in top.stdout for stage in STAGES)


SOURCE_MODULES = {"starfm.mock.survey", "starfm.sas_download"}
# the Gaia query CLI selects its archive: it may import the mock archive, and nothing else of the mock
ARCHIVE_SELECTION = {"starfm.gaia_query": {"starfm.mock", "starfm.mock.archive"}}


def test_no_mock_branch_after_the_data_sources():
    """Mock and real share every stage after the sources: no stage but the sources (and the
    archive selection in the Gaia query CLI) imports the mock survey or tests for the mode."""
    mock_modules = {p.relative_to(ROOT / "src").with_suffix("").as_posix().replace("/", ".")
                    for p in (ROOT / "src" / "starfm" / "mock").glob("*.py")}
    mock_modules = {m.removesuffix(".__init__") for m in mock_modules}
    assert {"starfm.mock", "starfm.mock.survey", "starfm.mock.archive"} <= mock_modules
    for stage, (target, _) in STAGES.items():
        module = target.split(":")[0]
        if module in SOURCE_MODULES:
            continue
        imported = _stage_modules(module) - {module}
        allowed = ARCHIVE_SELECTION.get(module, set())
        assert not (imported & mock_modules) - allowed, (stage, sorted(imported & mock_modules))
        if module in ARCHIVE_SELECTION:   # the mock archive itself needs none of the mock's physics
            archive_deps = set().union(*(_stage_modules(m) for m in allowed))
            assert archive_deps & mock_modules == allowed, sorted(archive_deps & mock_modules)
        source = _module_path(module).read_text()
        assert "mode" not in re.findall(r"config\[['\"](\w+)", source), stage
    for name, body, path in _rules():
        if path.name in ("sources.smk", "common.smk"):
            continue
        assert "MODE" not in body and "mock" not in body.replace("archive_args", ""), \
            f"rule {name} branches on the mode; only sources.smk/common.smk may"


def test_snakemake_lint_reports_nothing(tmp_path):
    """`snakemake --lint` (the snakemake-workflows projects' CI check) finds nothing to say."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "-d", str(tmp_path), "--lint"], capture_output=True, text=True,
                         timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "Lints for" not in text, text[-4000:]


def test_xp_formats_defined_once():
    """The schema's mock.xp_format choices are the formats the mock archive serves, and the
    real client's formats a subset of them."""
    from starfm.archive_formats import XP_FORMATS
    from starfm.gaia_archive import REAL_XP_FORMATS

    schema = yaml.safe_load((ROOT / "src" / "starfm" / "config.schema.yaml").read_text())
    assert tuple(schema["properties"]["mock"]["properties"]["xp_format"]["enum"]) == XP_FORMATS
    assert set(REAL_XP_FORMATS) < set(XP_FORMATS)


def test_each_env_lists_only_what_its_rules_import():
    """An env holds the union of its rules' stage imports and nothing else (python, pip aside)."""
    used: dict[Path, set[str]] = {}
    for name, body, path in _rules():
        env_file = (path.parent / re.search(r"conda:\s*\n\s*\"(.+?)\"", body).group(1)).resolve()
        stage = re.search(STAGE_CALL, body).group(1)
        module = STAGES[stage][0].split(":")[0]
        used.setdefault(env_file, set()).update(
            DIST_NAME.get(n, n).lower() for n in _third_party_imports(_stage_modules(module)))
    assert {p.name for p in used} == {p.name for p in (ROOT / "workflow" / "envs").glob("*.yaml")}
    for env_file, needed in used.items():
        unused = sorted(set(_env_packages(env_file)) - needed - {"python", "pip"})
        assert not unused, f"{env_file.name} pins {unused}, which none of its rules import"


@pytest.mark.skipif(shutil.which("conda") is not None, reason="conda is installed here")
def test_use_conda_without_conda_stops_at_once_with_snakemakes_message(tmp_path):
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "-d", str(tmp_path), "--configfile", str(ROOT / ".test" / "config.yaml"),
                          "--cores", "1", "--use-conda"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "Is conda installed" in out.stdout + out.stderr, (out.stdout + out.stderr)[-2000:]
    assert not (tmp_path / "results").exists(), "a job ran before Snakemake gave up on conda"


def test_every_stage_benchmark_reaches_the_report(tmp_path):
    """The report's run-time table is derived from the rules (STAGE_BENCHMARKS in figures.smk),
    not a hand list: every rule with a wildcard-free benchmark file is in report-tables'
    --benchmark list of a dry run (the mock source's too; the figures' one per figure)."""
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                          "-d", str(tmp_path), "-n", "-p", "--cores", "1"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    call = next(line for line in out.stdout.splitlines() if "starfm report-tables" in line)
    given = set(re.search(r"--benchmark (.*?) --numbers", call).group(1).split())
    expected = set()
    for name, body, _ in _rules():
        if name.startswith("library_"):   # defined only in library mode; this dry run is mock mode
            continue
        m = re.search(r"benchmark:\s*\n\s*R\(f?\"([^\"]+)\"\)", body)
        if m and "{" not in m.group(1).replace("{_name}", ""):
            paths = ([m.group(1).replace("{_name}", n) for n in FIGURE_NAMES]
                     if "{_name}" in m.group(1) else [m.group(1)])
            expected |= {f"results/{p}" for p in paths}
    assert "results/benchmarks/train.tsv" in expected and len(expected) > 20
    assert given == expected


def test_no_starfm_module_shadows_the_standard_library():
    """errors.py and tables.py, not io.py: `from starfm import io` would hide the standard
    library's io, which several modules use."""
    names = {p.stem for p in (ROOT / "src" / "starfm").rglob("*.py")}
    assert not names & {"io", "json", "logging", "typing", "types", "copy"}
    for path in (ROOT / "src" / "starfm").rglob("*.py"):
        assert not re.search(r"from starfm import [^\n]*\bio\b|starfm\.io\b", path.read_text()), path


def test_library_side_files_are_rule_inputs(tmp_path, realdata_dir):
    """library.ages_path and library.prior_xp_path are library_source inputs (a changed file
    reruns the stage), and a missing one stops the dry run with one line naming the key."""
    ages = realdata_dir / "labels/xgboost_chem_ages/Hasselquist2020_ages.fit"
    prior = realdata_dir / "xp/xp_spectral_lines/xp_continuous_combined_chunk0.fits"

    def dry_run(ages_path):
        lib = f"library={{ages_path: '{ages_path}', prior_xp_path: '{prior}'}}"
        return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
                               "-d", str(tmp_path), "-n", "--cores", "1", "--config",
                               "mode=library", f"results={tmp_path / 'results'}", lib],
                              capture_output=True, text=True, timeout=300)

    ok = dry_run(ages)
    assert ok.returncode == 0, ok.stderr[-3000:]
    block = ok.stdout[ok.stdout.index("rule library_source:"):]
    inputs = block.split("input:", 1)[1].split("\n", 1)[0]
    assert str(ages) in inputs and str(prior) in inputs, inputs
    bad = dry_run(tmp_path / "no_ages.fit")
    assert bad.returncode != 0
    lines = [line for line in (bad.stdout + bad.stderr).splitlines() if "library.ages_path" in line]
    assert len(lines) == 1 and "no_ages.fit" in lines[0] and "does not exist" in lines[0], bad.stderr
