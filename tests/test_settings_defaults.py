"""Defaults live only in bpo/resources/schema.yaml: no settings class declares one (every module of
bpo.settings is searched, so a new class is covered without editing this test), and an endpoint
written with its backend alone gets exactly the schema's values, limits included, whether it
comes from a config file or from code (bpo.llm.client_from_mapping)."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil

import pytest

import bpo.settings
from bpo.llm import client_from_mapping
from bpo.llm.limits import Limits
from bpo.settings import EndpointSettings, LLMRuntime, Settings, endpoint_config
from bpo.settings.config import load_schema


def _settings_classes() -> list[type]:
    found = {Limits}
    for mod in pkgutil.iter_modules(bpo.settings.__path__):
        module = importlib.import_module(f"bpo.settings.{mod.name}")
        found |= {
            v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Settings) and v is not Settings
        }
    return sorted(found, key=lambda c: (c.__module__, c.__name__))


CLASSES = _settings_classes()


def test_every_settings_class_is_found():
    names = {c.__name__ for c in CLASSES}
    assert {
        "EndpointSettings",
        "EndpointLimits",
        "LLMCall",
        "LLMRuntime",
        "LocalModelSettings",
        "CritiqueSettings",
        "JudgeSettings",
        "EndpointTargetSettings",
        "LLMRewriteSettings",
        "GenerationSettings",
        "SourceSettings",
        "TestsetSettings",
        "SFTSettings",
        "ReportSettings",
        "Limits",
        "HHRLHFOptions",
        "OASST1Options",
        "ChatbotArenaOptions",
        "AlpacaGPT4Options",
    } <= names
    assert len(CLASSES) >= 30


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_no_defaults_outside_the_schema(cls):
    with_default = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
    ]
    assert with_default == []


def _schema_endpoint() -> dict:
    return load_schema()["properties"]["llm"]["properties"]["endpoints"]["additionalProperties"]["properties"]


def test_endpoint_and_limits_get_the_schema_values():
    schema = _schema_endpoint()
    limits_defaults = {k: v["default"] for k, v in schema["limits"]["properties"].items()}
    config = endpoint_config("api", {"backend": "openai"})
    ep = EndpointSettings.from_config(config, "api")
    assert (ep.base_url, ep.api_key_env, dict(ep.default_headers)) == (
        schema["base_url"]["default"],
        schema["api_key_env"]["default"],
        schema["default_headers"]["default"],
    )
    assert LLMRuntime.from_config(config, "api").limits.canonical() == limits_defaults
    # a client built from a mapping written in code gets the same values (no second copy to drift)
    client = client_from_mapping({"backend": "standin"}, "unused.sqlite", "test", check_key=False)
    assert client.limits.canonical() == limits_defaults and client.api_key_env == schema["api_key_env"]["default"]


def test_local_endpoint_options_get_the_schema_values():
    schema = _schema_endpoint()
    ep = EndpointSettings.from_config(endpoint_config("loc", {"backend": "local", "model": "some/model"}), "loc")
    assert ep.local.canonical() == {
        "model": "some/model",
        **{k: schema[k]["default"] for k in ("default_max_tokens", "dtype", "engine")},
    }


def test_source_options_are_typed_with_the_schema_values():
    from bpo.settings import SourceSettings, load_config
    from bpo.settings.data import SOURCE_OPTIONS

    schema = load_schema()["properties"]["sources"]["properties"]
    config = load_config()
    for name, cls in SOURCE_OPTIONS.items():
        options = SourceSettings.from_config(config, name).options
        assert isinstance(options, cls)
        assert {k: v for k, v in options.canonical().items()} == {
            f.name: config["sources"][name][f.name] for f in dataclasses.fields(cls)
        }
        assert set(options.canonical()) | {"activate", "path", "hub_id", "split", "sample"} == set(
            schema[name]["properties"]
        )
    assert SourceSettings.from_config(
        load_config(overrides={"sources": {"oasst1": {"languages": ["de"]}}}), "oasst1"
    ).options.languages == ("de",)
