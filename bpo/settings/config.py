"""Load and validate a workflow config outside Snakemake (CLI, tests, benchmarks), with the schema's
defaults filled in exactly as ``snakemake.utils.validate(config, schema)`` fills them."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"
DEFAULT_CONFIG_PATH = SCHEMA_PATH.with_name("config.yaml")


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


def validate_config(config: dict, schema: Mapping | None = None) -> dict:
    """Fill defaults into ``config`` in place and return it; a :class:`ConfigError` lists every problem."""
    errors = schema_errors(config, schema)
    if errors:
        lines = [f"{'.'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors]
        raise ConfigError("config does not validate:\n  " + "\n  ".join(lines))
    return config


def merge(base: Mapping, over: Mapping) -> dict:
    """``over`` merged into a copy of ``base``, recursively (how Snakemake merges --configfile)."""
    out = copy.deepcopy(dict(base))
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out


def load_config(*paths: str | Path, overrides: Mapping[str, Any] | None = None) -> dict:
    """The validated config: ``config/config.yaml`` when no path is given, later files and then
    ``overrides`` merged over earlier ones, schema defaults filled in."""
    config: dict = {}
    for path in paths or (DEFAULT_CONFIG_PATH,):
        config = merge(config, yaml.safe_load(Path(path).read_text()) or {})
    if overrides:
        config = merge(config, overrides)
    return validate_config(config)
