"""The config files validate against the schema, defaults fill in, and typos are errors."""

from __future__ import annotations

import copy

import pytest
import yaml
from conftest import REPO, edit_config, snakemake
from snakemake.utils import validate

from bpo.settings.config import SCHEMA_PATH


def _load(name):
    return yaml.safe_load((REPO / "config" / name).read_text())


def _merged(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_default_config_validates_and_gets_defaults():
    cfg = _load("config.yaml")
    validate(cfg, str(SCHEMA_PATH))
    # defaults from the schema fill what the file leaves out
    assert cfg["pairs"]["dedup"] is True
    assert set(cfg["sources"]) == {"hh_rlhf", "oasst1", "chatbot_arena", "alpaca_gpt4"}


def test_paper_config_validates_over_default():
    cfg = _merged(_load("config.yaml"), _load("paper.yaml"))
    validate(cfg, str(SCHEMA_PATH))
    assert cfg["sources"]["hh_rlhf"]["hub_id"] == "Anthropic/hh-rlhf"


def test_every_schema_key_is_described():
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    missing = []

    def walk(node, path):
        for key, sub in (node.get("properties") or {}).items():
            if "description" not in sub:
                missing.append(".".join(path + [key]))
            if sub.get("type") == "object":
                walk(sub, path + [key])

    walk(schema, [])
    assert not missing, f"schema keys without description: {missing}"


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["pairs"].__setitem__("max_respnse_chars", 10), "max_respnse_chars"),
        (lambda c: c["pairs"].__setitem__("seed", "forty-two"), "forty-two"),
    ],
)
def test_bad_key_or_type_is_an_error_naming_it(mutate, key):
    cfg = _load("config.yaml")
    mutate(cfg)
    with pytest.raises(Exception) as err:
        validate(cfg, str(SCHEMA_PATH))
    assert key in str(err.value)


def test_bad_key_fails_at_parse_time(workflow_copy):
    edit_config(workflow_copy, lambda cfg: cfg["pairs"].update(max_respnse_chars=10))
    proc = snakemake(workflow_copy, "-n", "--cores", "1", check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config pairs.max_respnse_chars: unknown key (did you mean 'max_response_chars'?)" in out
    assert "description" not in out and "additionalProperties" not in out  # no schema dump
    assert len(out.splitlines()) < 12
