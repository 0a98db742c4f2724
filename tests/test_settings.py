"""Every stage's settings dataclass mirrors its config.yaml section: the same keys, types and
defaults as src/starfm/config.schema.yaml (and config.yaml ships exactly those defaults),
so a setting cannot drift between the schema, the config and the code. Also: the one
``--settings`` parser's errors."""
from __future__ import annotations

import dataclasses
import importlib
import json
import typing

import pytest
import yaml

from starfm.__main__ import STAGES
from starfm.errors import StarfmInputError
from starfm.settings import config_schema, parse_settings

# sections that are not one stage's settings: the run mode, the output directory, and the
# catalogue target's section (its files; the predict stage's PredictSettings take its
# chunk_rows/batch_size/inputs/device with the cuts and zero point, tests/test_predict.py)
# and the per-figure sections (each figure module's settings class, tests/test_figures.py)
NOT_STAGE_SETTINGS = {"mode", "results", "cpu_kernels", "predict", "figures"}
JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean"}


def settings_classes() -> dict[str, type]:
    """section -> the dataclass of the stage modules that declares it (nested ones included)."""
    found: dict[str, type] = {}

    def visit(cls):
        section = getattr(cls, "SECTION", None)
        if section:
            assert found.get(section, cls) is cls, f"section {section} has two settings classes"
            found[section] = cls
        for f in dataclasses.fields(cls):
            kind = typing.get_type_hints(cls)[f.name]
            if dataclasses.is_dataclass(kind):
                visit(kind)

    for target, _ in STAGES.values():
        module = importlib.import_module(target.split(":")[0])
        for obj in vars(module).values():
            if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__:
                if getattr(obj, "SECTION", None) or any(
                        dataclasses.is_dataclass(typing.get_type_hints(obj)[f.name])
                        for f in dataclasses.fields(obj)):
                    visit(obj)
    return found


def schema_node(section: str | tuple) -> dict:
    """The section's schema (several sections: their properties together, e.g. train: plus
    the CPU recipe for TrainConfig), with each property's default (a recipe's defaults are
    given for the recipe as a whole)."""
    if isinstance(section, tuple):
        nodes = [schema_node(s) for s in section]
        assert all(n.get("additionalProperties") is False for n in nodes)
        return {"additionalProperties": False,
                "properties": {k: v for n in nodes for k, v in n["properties"].items()}}
    node = config_schema()
    for part in section.split("."):
        node = node["properties"][part]
    if "$ref" in node:
        whole = node.get("default", {})
        node = _resolve(node)
        node = {**node, "properties": {k: {**v, "default": whole[k]} if k in whole else v
                                       for k, v in node["properties"].items()}}
    return node


def _resolve(prop: dict) -> dict:
    if "$ref" in prop:
        name = prop["$ref"].split("/")[-1]
        return {**config_schema()["$defs"][name], **{k: v for k, v in prop.items() if k != "$ref"}}
    return prop


def _config_node(config: dict, section: str | tuple) -> dict:
    if isinstance(section, tuple):
        return {k: v for s in section for k, v in _config_node(config, s).items()}
    for part in section.split("."):
        config = config[part]
    return config


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


CLASSES = settings_classes()


def test_every_config_section_has_a_settings_class():
    covered = {s.split(".")[0] for section in CLASSES
               for s in (section if isinstance(section, tuple) else (section,))}
    sections = set(config_schema()["properties"]) - NOT_STAGE_SETTINGS
    assert sections <= covered, f"sections without a settings dataclass: {sections - covered}"


def test_every_recipe_is_complete_and_valid():
    """recipes.paper has exactly the keys of recipes.cpu (TrainConfig's recipe fields) and
    config.yaml ships both as the schema's defaults."""
    from starfm.train import TrainConfig

    recipes = config_schema()["properties"]["recipes"]["properties"]
    keys = {k for k in schema_node("recipes.cpu")["properties"]}
    for name in recipes:
        assert set(recipes[name]["default"]) == keys, name
        parse_settings(TrainConfig, {**recipes[name]["default"], "recipe": name})
    assert set(recipes) == set(config_schema()["properties"]["train"]["properties"]["recipe"]["enum"])


@pytest.mark.parametrize("section", sorted(CLASSES, key=str), ids=str)
def test_dataclass_matches_the_schema(section):
    cls = CLASSES[section]
    node = schema_node(section)
    props = node["properties"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(fields) == set(props), (f"{cls.__name__} fields vs schema '{section}': only in the "
                                       f"class {set(fields) - set(props)}, only in the schema "
                                       f"{set(props) - set(fields)}")
    assert node.get("additionalProperties") is False, f"schema '{section}' must reject unknown keys"
    hints = typing.get_type_hints(cls)
    instance = cls()
    for name, prop in props.items():
        prop = _resolve(prop)
        assert prop.get("description"), f"schema {section}.{name} has no description"
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            assert prop["type"] == "object"
            continue
        if typing.get_origin(kind) is tuple:
            assert prop["type"] == "array", f"{section}.{name}"
            inner = typing.get_args(kind)[0]
            if "items" in prop:
                assert prop["items"]["type"] == JSON_TYPES[inner], f"{section}.{name}"
        else:
            assert prop["type"] == JSON_TYPES[kind], f"{section}.{name}: {kind} vs {prop['type']}"
        if "enum" in prop:
            assert getattr(instance, name) in prop["enum"]
        assert _plain(getattr(instance, name)) == prop["default"], (
            f"{cls.__name__}.{name} default {getattr(instance, name)!r} != schema "
            f"{section}.{name} default {prop['default']!r}")


def test_config_yaml_ships_the_schema_defaults(repo_root):
    config = yaml.safe_load((repo_root / "config.yaml").read_text())
    for section, cls in CLASSES.items():
        assert _config_node(config, section) == _plain(cls()), f"config.yaml '{section}' differs from the defaults"
    assert config["recipes"]["paper"] == config_schema()["properties"]["recipes"]["properties"]["paper"]["default"]


def test_parse_settings_errors_name_the_key():
    from starfm.dust_mc import DustSettings
    from starfm.train import TrainConfig

    assert parse_settings(TrainConfig, '{"epochs": 2}') == dataclasses.replace(TrainConfig(), epochs=2)
    assert parse_settings(TrainConfig, {"never_request": ["j_k"]}).never_request == ("j_k",)
    assert parse_settings(DustSettings, '{"negative_parallax_distance_kpc": 50}'
                          ).negative_parallax_distance_kpc == 50.0       # int -> float
    with pytest.raises(StarfmInputError, match=r"unknown key\(s\) \['epoch'\]"):
        parse_settings(TrainConfig, '{"epoch": 2}')
    with pytest.raises(StarfmInputError, match="not valid JSON"):
        parse_settings(TrainConfig, "{epochs: 2}")
    with pytest.raises(StarfmInputError, match="'epochs'.*minimum"):
        parse_settings(TrainConfig, {"epochs": 0})
    with pytest.raises(StarfmInputError, match="'device'"):
        parse_settings(TrainConfig, {"device": "tpu"})
    with pytest.raises(StarfmInputError, match="'epochs'"):
        parse_settings(TrainConfig, {"epochs": "many"})
    with pytest.raises(StarfmInputError, match="expected a JSON object"):
        parse_settings(TrainConfig, json.dumps([1, 2]))


def test_nested_settings_of_assembly():
    from starfm.assemble import AssembleSettings

    s = parse_settings(AssembleSettings, {"cuts": {"mass": [0.6, 4.0]}, "split": {"seed": 9}})
    assert s.cuts.mass == (0.6, 4.0) and s.cuts.ruwe_max == 1.4 and s.split.seed == 9
    with pytest.raises(StarfmInputError, match="cuts.*mass"):
        parse_settings(AssembleSettings, {"cuts": {"mass": [1, 2, 3]}})


def test_every_figure_takes_its_full_config_section():
    """The workflow passes each figure its whole `figures.<name>` section (schema defaults filled
    in): every figure's settings class must parse it and keep the values."""
    from starfm.figures.registry import FIGURES
    from starfm.figures.stage import figure_settings

    config = yaml.safe_load((__import__("helpers").REPO_ROOT / "config.yaml").read_text())
    for name, entry in FIGURES.items():
        cls = figure_settings(name)
        props = schema_node(f"figures.{name}")["properties"]
        given = {k: v["default"] for k, v in props.items()}
        given.update(config.get("figures", {}).get(name, {}))
        s = parse_settings(cls, given, section=f"figures.{name}")
        assert _plain(s) == given, name


def test_a_non_editable_install_ships_the_schema_and_validates(repo_root, tmp_path):
    """The schema is package data: starfm installed as a plain (non-editable) package, away
    from the checkout, still rejects a bad value with the one-line error naming the key; and
    an install that lost the schema fails instead of skipping validation."""
    import shutil
    import subprocess
    import sys

    target = tmp_path / "site"
    # build from a copy of the sources: setuptools keeps old files in the checkout's build/
    # (a removed module would ship again) and writes there
    source = tmp_path / "source"
    shutil.copytree(repo_root, source, ignore=shutil.ignore_patterns(
        "build", "results*", ".git", ".snakemake", "*.egg-info", "__pycache__", ".test"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(source)],
                   check=True, capture_output=True)
    assert not (target / "starfm" / "io.py").exists()
    assert (target / "starfm" / "config.schema.yaml").is_file()
    env = {**__import__("os").environ, "PYTHONPATH": str(target)}
    run = subprocess.run([sys.executable, "-m", "starfm", "dust", "--allstar", "a", "--gaia-source",
                          "g", "--parallax", "p", "--out", str(tmp_path / "x.h5"),
                          "--settings", '{"negative_draws": "bogus"}'],
                         cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode != 0
    errors = [line for line in (run.stdout + run.stderr).splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "'negative_draws': 'bogus' is not one of" in errors[0], run.stderr
    assert not (tmp_path / "x.h5").exists()
    # the installed copy really was the one used (not the checkout's)
    where = subprocess.run([sys.executable, "-c", "import starfm; print(starfm.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(target))
    (target / "starfm" / "config.schema.yaml").unlink()
    shutil.rmtree(target / "starfm" / "__pycache__", ignore_errors=True)
    broken = subprocess.run([sys.executable, "-c", "from starfm.settings import parse_settings;"
                             "from starfm.dust_mc import DustSettings;"
                             "parse_settings(DustSettings, {'seed': 2})"],
                            cwd=tmp_path, env=env, capture_output=True, text=True)
    assert broken.returncode != 0 and "config schema is missing" in broken.stderr
