# Helpers shared by every rule file. Validation runs first so a bad key fails at parse time.
import os
import re
from urllib.parse import urlparse

from snakemake.utils import validate

from bpo.critique import template_sha256 as _critique_template_sha256
from bpo.sources import SOURCES


validate(config, schema="../config/schema.yaml")


# Rules that call an LLM API run on the submit host: compute nodes often have no internet.
localrules:
    all,


def active_sources():
    """Names of the preference sources switched on in config (in config order)."""
    return [name for name, cfg in config["sources"].items() if cfg["activate"]]


# --- data stage (rules/data.smk) ---
def pairs_source_inputs(wildcards):
    """The local files a source reads, so editing one reruns it; none when a hub id is set.
    A folder stands for the data files inside it (a folder's own mtime misses edits)."""
    from pathlib import Path

    from bpo.readers import data_files
    from bpo.sources import local_inputs

    inputs = {}
    for role, path in local_inputs(wildcards.source, config["sources"][wildcards.source]).items():
        inputs[role] = [str(f) for f in data_files(path)] if Path(path).is_dir() else path
    return inputs


def pairs_source_settings(wildcards):
    """Everything in the source's config section that changes its pairs."""
    return {k: v for k, v in config["sources"][wildcards.source].items() if k != "activate"}


def pairs_cleaning_settings():
    """Cleaning limits and the sampling seed; `dedup` only matters to the merge."""
    return {k: v for k, v in config["pairs"].items() if k != "dedup"}
# --- end data stage ---


def llm_endpoint(name):
    """The result-relevant settings of a named LLM endpoint (limits excluded: they change
    throughput, not answers, so editing them must not rerun anything)."""
    try:
        endpoint = config["llm"]["endpoints"][name]
    except KeyError:
        raise ValueError(
            f"config: LLM endpoint '{name}' is not defined under llm.endpoints "
            f"(defined: {sorted(config['llm']['endpoints'])})"
        )
    return {k: v for k, v in endpoint.items() if k != "limits"}


def get_final_output():
    """Targets of `rule all`, following the config's activate switches."""
    targets = expand("results/pairs/{source}.parquet", source=active_sources())
    targets.append("results/pairs/all.parquet")
    targets += ["results/sft/train.parquet", "results/sft/val.parquet", "results/sft/filter_report.json"]  # rules/critique.smk
    targets.append("results/models/optimizer")  # rules/train.smk
    targets += eval_report_outputs()  # rules/report.smk
    return targets


# --- critique stage (rules/critique.smk) ---


def _critique_canonical(value):
    """Dicts with sorted keys, recursively: Snakemake compares params by their text, so key
    order alone (a reformatted config) must not look like a change."""
    if isinstance(value, dict):
        return {k: _critique_canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_critique_canonical(v) for v in value]
    return value


def critique_endpoint():
    return _critique_canonical(llm_endpoint(config["critique"]["endpoint"]))


def critique_settings():
    """Model and sampling of the critique calls (the template is tracked by path and hash)."""
    cfg = config["critique"]
    return {k: cfg[k] for k in ("model", "temperature", "top_p", "max_tokens", "seed")}


def critique_template_sha256():
    """Content hash of the template: editing the file reruns the critiques (a touch does not)."""
    return _critique_template_sha256(config["critique"]["template"])


def sft_mode():
    return config["sft"]["source"]


def sft_inputs(wildcards):
    """Critique mode: the pairs and every active source's critiques. BPO-format mode: the
    local dataset file(s), or nothing when it comes from the hub."""
    if sft_mode() == "critiques":
        return {
            "pairs": "results/pairs/all.parquet",
            "critiques": expand("results/critiques/{source}.parquet", source=active_sources()),
        }
    bpo = config["sft"]["bpo_dataset"]
    if bpo["hub_id"] or not bpo["path"]:
        return {}
    from bpo.readers import ReadError, data_files

    try:
        return {"bpo_dataset": [str(f) for f in data_files(bpo["path"])]}
    except ReadError as exc:
        raise ValueError(f"config sft.bpo_dataset.path: {exc}")


def sft_settings():
    """Filter rules, split and context formats; the BPO-format source only in that mode."""
    cfg = dict(config["sft"])
    if cfg["source"] != "bpo_dataset":
        cfg.pop("bpo_dataset")
    return _critique_canonical(cfg)


# --- train stage (rules/train.smk) ---
def train_cfg(key):
    return config["train"][key]


def deepspeed_config_input():
    path = config["train"]["deepspeed"]
    return [path] if path else []


# --- evaluate stage (rules/evaluate.smk) ---


def eval_testsets():
    """Active test set names (config order)."""
    return [name for name, cfg in config["eval"]["testsets"].items() if cfg["activate"]]


def eval_targets(kind=None):
    """Active target names, optionally of one kind (endpoint | hf)."""
    return [
        name
        for name, cfg in config["eval"]["targets"].items()
        if cfg["activate"] and (kind is None or cfg["kind"] == kind)
    ]


def _names_regex(names):
    # A constraint that matches nothing when no target has this kind.
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


def downloaded_testset_path(name, url):
    """Where rule download_testset stores a test set fetched from ``url``."""
    return f"data/testsets/{name}/{os.path.basename(urlparse(url).path) or 'testset.json'}"


def eval_testset_cfg(name):
    try:
        cfg = dict(config["eval"]["testsets"][name])
    except KeyError:
        raise ValueError(f"config: eval.testsets has no test set '{name}' (defined: {sorted(config['eval']['testsets'])})")
    if not cfg.get("path"):
        cfg["path"] = downloaded_testset_path(name, cfg["url"])
    cfg["seed"] = config["eval"]["sample_seed"]
    return cfg


def downloaded_testsets():
    """Test sets fetched by URL (no local path set)."""
    return [n for n, c in config["eval"]["testsets"].items() if c.get("url") and not c.get("path")]


def eval_target_cfg(name):
    """Result-relevant settings of a target (settings of the other kind left out)."""
    try:
        cfg = dict(config["eval"]["targets"][name])
    except KeyError:
        raise ValueError(f"config: eval.targets has no target '{name}' (defined: {sorted(config['eval']['targets'])})")
    cfg.pop("activate", None)
    if cfg["kind"] == "endpoint":
        if not cfg.get("endpoint"):
            raise ValueError(f"config: eval.targets.{name}: kind endpoint needs 'endpoint' (a name under llm.endpoints)")
        for key in ("batch_size", "dtype"):
            cfg.pop(key, None)
    else:
        cfg.pop("endpoint", None)
    return cfg


def eval_target_endpoint(name):
    cfg = config["eval"]["targets"][name]
    return llm_endpoint(cfg["endpoint"]) if cfg["kind"] == "endpoint" else None


def local_model_input(model):
    """A model folder as an input when it is a local path (a hub id is a param only)."""
    return [model] if os.path.exists(model) else []


def optimizer_model_input():
    model = config["eval"]["optimizer"]["model"]
    return ["results/models/optimizer"] if model is None else local_model_input(model)


def optimizer_params():
    return {k: v for k, v in config["eval"]["optimizer"].items() if k != "model"}


def judge_params():
    cfg = dict(config["eval"]["judge"])
    cfg.pop("template")  # an input: its content is tracked through the file
    return cfg


# --- report stage (rules/report.smk) ---
def eval_pairs():
    """(test set, target) pairs that the report covers."""
    return [(ts, tg) for ts in eval_testsets() for tg in eval_targets()]


def eval_report_outputs():
    """Final outputs of the evaluation (empty when no test set or target is active)."""
    out = []
    if eval_pairs():
        out += [
            "results/report/winrates.parquet",
            "results/report/summary.md",
            "results/report/winrates.png",
            "results/report/intrinsic.json",
        ]
    if config["eval"]["sft_rewrite"]["activate"]:
        out += ["results/sft_rewrite/reproduce.json", "results/sft_rewrite/train.json"]
    return out


# --- models (rules/models.smk) ---
from bpo.base_models import DEFAULT_CACHE_DIR as _WHEEL_MODEL_CACHE
from bpo.base_models import WHEEL_MODELS as _WHEEL_MODELS
from bpo.base_models import wheel_model as _wheel_model


def wheel_model_names_regex():
    return _names_regex(sorted(_WHEEL_MODELS))


def wheel_model_dir(name):
    """The cache folder rule base_model builds for wheel-shipped model ``name``."""
    return f"{_WHEEL_MODEL_CACHE.as_posix()}/{_wheel_model(name).name}"


def wheel_model_settings(wildcards):
    return _wheel_model(wildcards.base_model).canonical()


def wheel_model_input(model):
    """``[model]`` when ``model`` (e.g. train.base_model) is a folder rule base_model builds,
    so Snakemake builds it first; else nothing (a hub id, another folder or null)."""
    if model is None:
        return []
    built = {wheel_model_dir(name) for name in _WHEEL_MODELS}
    return [model] if os.path.normpath(str(model)) in built else []
