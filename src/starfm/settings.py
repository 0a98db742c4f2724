"""One settings object per stage: a frozen dataclass that mirrors a section of ``config.yaml``.

A stage's command line takes file paths plus one ``--settings '<json object>'`` argument; the
Snakemake rule passes the stage's config section there as JSON (``as_json`` in
``workflow/rules/common.smk``), so Snakemake reruns a rule exactly when its section changes.
By hand every key may be left out and takes its default::

    python -m starfm train --dataset results/dataset.h5 ... --settings '{"epochs": 2}'

The defaults of every settings dataclass are the defaults of its section in
``src/starfm/config.schema.yaml`` (``tests/test_settings.py`` checks names, types and
defaults against the schema, so they cannot drift). Adding a setting = one dataclass field plus
one schema entry (and its line in ``config.yaml``).

:func:`parse_settings` turns the JSON into the dataclass: unknown keys, wrong types and values
the schema forbids (ranges, enums) are a one-line :class:`~starfm.errors.StarfmInputError` naming
the key.
"""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import typing
from functools import lru_cache
from typing import Any, TypeVar

from starfm.errors import StarfmInputError

T = TypeVar("T")

SCHEMA_NAME = "config.schema.yaml"   # package data (pyproject.toml), beside this module


@lru_cache(maxsize=1)
def config_schema() -> dict:
    """The config schema, shipped inside the package (``starfm/config.schema.yaml``); the
    Snakefile validates the whole config against the same file. Missing = a broken install, an
    error: validation is never skipped."""
    import yaml

    resource = importlib.resources.files("starfm") / SCHEMA_NAME
    try:
        text = resource.read_text()
    except (FileNotFoundError, OSError) as exc:
        raise StarfmInputError(f"{resource}: the config schema is missing from the installed "
                               f"starfm package (reinstall it)") from exc
    return yaml.safe_load(text)


def resolve(node: dict) -> dict:
    """A schema node with a local ``$ref`` (``#/$defs/name``) replaced by its target."""
    if "$ref" not in node:
        return node
    target = config_schema()["$defs"][node["$ref"].split("/")[-1]]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def section_schema(section: str | tuple[str, ...]) -> dict | None:
    """The JSON schema of one (possibly dotted, e.g. ``recipes.cpu``) config section, or of
    several merged into one object (their properties together)."""
    schema = config_schema()
    if isinstance(section, tuple):
        parts = [section_schema(s) for s in section]
        if any(p is None for p in parts):
            return None
        props = {k: v for p in parts for k, v in p.get("properties", {}).items()}
        return {"type": "object", "additionalProperties": False, "properties": props,
                "$defs": schema.get("$defs", {})}
    node = schema
    for part in section.split("."):
        node = resolve(node).get("properties", {}).get(part)
        if node is None:
            return None
    return {**resolve(node), "$defs": schema.get("$defs", {})}


def _coerce(value: Any, kind: Any, key: str, option: str):
    """``value`` as the field type ``kind`` (JSON gives lists for tuples, ints for floats)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", typing.Union)):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option_kind in (k for k in options if k is not type(None)):
            try:
                return _coerce(value, option_kind, key, option)
            except StarfmInputError as exc:
                errors.append(exc)
        raise errors[0]
    if kind is dict and isinstance(value, dict):
        return value
    if kind in (tuple, list) and isinstance(value, (list, tuple)):
        return kind(value)
    if dataclasses.is_dataclass(kind):
        return parse_settings(kind, value, f"{option}.{key}")
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (str, bool) and isinstance(value, kind):
        return value
    if origin is tuple and isinstance(value, (list, tuple)):
        inner = typing.get_args(kind)
        inner = inner[0] if inner else Any
        return tuple(_coerce(v, inner, key, option) for v in value)
    if kind is Any:
        return value
    raise StarfmInputError(f"{option}: '{key}' must be {getattr(kind, '__name__', kind)}, "
                           f"got {value!r}")


def parse_settings(cls: type[T], value: Any = None, option: str = "--settings",
                   section: str | None = None) -> T:
    """``cls`` from a JSON object (text or dict); missing keys take the dataclass defaults.
    Values are checked against the schema of ``section`` (default ``cls.SECTION``)."""
    if value is None or value == "":
        value = {}
    if isinstance(value, (str, bytes)):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise StarfmInputError(f"{option}: not valid JSON ({exc}): {value!r}") from None
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if not isinstance(value, dict):
        raise StarfmInputError(f"{option}: expected a JSON object, got {value!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise StarfmInputError(f"{option}: unknown key(s) {unknown}; known: {sorted(fields)}")
    section = section or getattr(cls, "SECTION", None)
    schema = section_schema(section) if section else None
    if schema is not None:
        _validate(value, schema, option)
    elif section and fields:
        # a settings class the schema does not describe would go unvalidated: a bug, not input
        raise RuntimeError(f"{cls.__name__}: config section {section!r} is not in the schema")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], k, option) for k, v in value.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise StarfmInputError(f"{option}: {exc}") from None


def _validate(value: dict, schema: dict, option: str) -> None:
    import jsonschema

    # a partial object is fine here (defaults fill the rest): check the keys given only
    schema = {k: v for k, v in schema.items() if k != "required"}
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(object)"
        raise StarfmInputError(f"{option}: '{where}': {error.message}")


def settings_help(cls) -> str:
    """``--settings`` help text: every key with its default."""
    defaults = {f.name: _jsonable(getattr(cls(), f.name)) for f in dataclasses.fields(cls)}
    section = getattr(cls, "SECTION", "")
    return (f"JSON object of settings (config.yaml section '{section}', keys described in "
            f"src/starfm/config.schema.yaml); omitted keys take their defaults: "
            + json.dumps(defaults, sort_keys=True).replace("%", "%%"))


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def add_settings_argument(parser, cls) -> None:
    """The one ``--settings`` option of a stage's command line."""
    parser.add_argument("--settings", default="{}", metavar="JSON", help=settings_help(cls))
