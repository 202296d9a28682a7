"""Load and validate a workflow config outside Snakemake (CLI, tests, benchmarks), with the schema's
defaults filled in exactly as ``snakemake.utils.validate(config, schema)`` fills them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

# The schemas ship inside the package (package data), so an installed wheel validates too.
RESOURCES = Path(str(files("bpo").joinpath("resources")))
SCHEMA_PATH = RESOURCES / "schema.yaml"
# The workflow's own config, where Snakemake reads it: relative to the working folder.
DEFAULT_CONFIG_PATH = Path("config", "config.yaml")


class ConfigError(ValueError):
    """A config that does not validate against the schema."""


def _validator_class():
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})


def load_schema(path: str | Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def schema_errors(config: dict, schema: Mapping | None = None) -> list:
    """jsonschema errors of ``config`` (defaults are filled in place as a side effect)."""
    validator = _validator_class()(dict(schema or load_schema()))
    return sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))


def _key_path(path) -> str:
    return ".".join(map(str, path)) or "<top>"


def _did_you_mean(word: object, choices) -> str:
    import difflib

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _error_lines(error) -> list[str]:
    """One readable line per problem: the key path, what is wrong and a "did you mean" for an
    unknown key or enum value. Built from the error's parts, never from ``str(error)``
    (that one dumps the schema)."""
    where = _key_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties") or {})
        unknown = [k for k in error.instance if k not in known]
        return [
            f"{_key_path([*error.absolute_path, k])}: unknown key"
            + (_did_you_mean(k, known) or f" (known: {', '.join(known)})")
            for k in unknown
        ]
    if error.validator == "enum":
        choices = error.validator_value
        return [
            f"{where}: {error.instance!r} is not one of {', '.join(map(repr, choices))}"
            f"{_did_you_mean(error.instance, choices)}"
        ]
    if error.validator in ("anyOf", "oneOf") and error.context:
        return [f"{where}: " + " or ".join(sorted({e.message for e in error.context}))]
    return [f"{where}: {error.message}"]


def config_problems(config: dict, schema: Mapping | None = None) -> list[str]:
    """Every schema problem of ``config`` as one line each (defaults are filled in place)."""
    return [line for e in schema_errors(config, schema) for line in _error_lines(e)]


def validate_config(config: dict, schema: Mapping | None = None) -> dict:
    """Fill defaults into ``config`` in place and return it; a :class:`ConfigError` lists every
    problem, one line each (``config pairs.max_respnse_chars: unknown key (did you mean ...?)``)."""
    problems = config_problems(config, schema)
    if problems:
        raise ConfigError("\n".join(f"config {line}" for line in problems))
    return config


def merge(base: Mapping, over: Mapping) -> dict:
    """``over`` merged into a copy of ``base``, recursively (how Snakemake merges --configfile)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def load_config(*paths: str | Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """The validated config: the working folder's ``config/config.yaml`` when no path is given, later
    files and then ``overrides`` merged over earlier ones, schema defaults filled in."""
    if not paths and not DEFAULT_CONFIG_PATH.is_file():
        raise ConfigError(
            f"no {DEFAULT_CONFIG_PATH} in the working folder {Path.cwd()}: run from the workflow's "
            "folder or pass the config file"
        )
    config: dict = {}
    for path in paths or (DEFAULT_CONFIG_PATH,):
        config = merge(config, yaml.safe_load(Path(path).read_text()) or {})
    if overrides:
        config = merge(config, overrides)
    return validate_config(config)
