# stage: evaluate -- optimized test prompts, target answers, two-order pairwise judging.
# Every config value that changes a result is a param, so editing it reruns exactly the rules
# it affects (e.g. a new judge model reruns judge and report, not optimize or answer). LLM
# limits and the cache path are read by the scripts from config on purpose: throughput only.
import os
import re
from urllib.parse import urlparse


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


def optimizer_model():
    """The optimizer to use: the trained one unless eval.optimizer.model names another."""
    return config["eval"]["optimizer"]["model"] or "results/models/optimizer"


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


localrules:
    download_testset,
    answer,
    judge,
    sft_rewrite_answer,


# Fetched on the submit host (compute nodes often have no internet); building the DAG never
# touches the network.
rule download_testset:
    output:
        testset="data/testsets/{testset}/{filename}",
    params:
        url=lambda wc: config["eval"]["testsets"][wc.testset]["url"],
    wildcard_constraints:
        testset=_names_regex(downloaded_testsets()),
        filename="[^/]+",
    log:
        "logs/eval/download_{testset}_{filename}.log",
    conda:
        "../envs/eval.yaml"
    script:
        "../workflow_scripts/download_testset.py"


rule optimize_testset:
    input:
        testset=lambda wc: eval_testset_cfg(wc.testset)["path"],
        model=optimizer_model_input(),
    output:
        optimized="results/eval/{testset}/optimized.parquet",
    params:
        name=lambda wc: wc.testset,
        testset=lambda wc: eval_testset_cfg(wc.testset),
        optimizer=optimizer_params(),
        model=optimizer_model(),
    wildcard_constraints:
        testset="[^/]+",
    log:
        "logs/eval/optimize_{testset}.log",
    benchmark:
        "benchmarks/eval/optimize_{testset}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    script:
        "../workflow_scripts/optimize_testset.py"


rule answer:
    input:
        optimized="results/eval/{testset}/optimized.parquet",
    output:
        answers="results/eval/{testset}/{target}/answers.parquet",
    params:
        target=lambda wc: eval_target_cfg(wc.target),
        endpoint=lambda wc: eval_target_endpoint(wc.target),
    wildcard_constraints:
        testset="[^/]+",
        target=_names_regex(eval_targets("endpoint")),
    log:
        "logs/eval/answer_{testset}_{target}.log",
    benchmark:
        "benchmarks/eval/answer_{testset}_{target}.tsv"
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    script:
        "../workflow_scripts/answer.py"


# A local HF target generates on a compute node (GPU), so it is a separate, non-local rule.
rule answer_hf:
    input:
        optimized="results/eval/{testset}/optimized.parquet",
        model=lambda wc: local_model_input(config["eval"]["targets"][wc.target]["model"]),
    output:
        answers="results/eval/{testset}/{target}/answers.parquet",
    params:
        target=lambda wc: eval_target_cfg(wc.target),
        endpoint=None,
    wildcard_constraints:
        testset="[^/]+",
        target=_names_regex(eval_targets("hf")),
    log:
        "logs/eval/answer_{testset}_{target}.log",
    benchmark:
        "benchmarks/eval/answer_{testset}_{target}.tsv"
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    script:
        "../workflow_scripts/answer.py"


rule judge:
    input:
        answers="results/eval/{testset}/{target}/answers.parquet",
        template=config["eval"]["judge"]["template"],
    output:
        judgments="results/eval/{testset}/{target}/judgments.parquet",
    params:
        judge=judge_params(),
        endpoint=llm_endpoint(config["eval"]["judge"]["endpoint"]),
    wildcard_constraints:
        testset="[^/]+",
        target="[^/]+",
    log:
        "logs/eval/judge_{testset}_{target}.log",
    benchmark:
        "benchmarks/eval/judge_{testset}_{target}.tsv"
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    script:
        "../workflow_scripts/judge.py"


# Optional: BPO for SFT data (the paper's alpaca_reproduce), off by default.
rule sft_rewrite_optimize:
    input:
        testset=lambda wc: config["eval"]["sft_rewrite"]["path"] or [],
        model=optimizer_model_input(),
    output:
        optimized="results/sft_rewrite/optimized.parquet",
    params:
        name="sft_rewrite",
        testset=lambda wc: {
            "path": config["eval"]["sft_rewrite"]["path"],
            "format": "alpaca",
            "sample": config["eval"]["sft_rewrite"]["sample"],
            "seed": config["eval"]["sample_seed"],
        },
        optimizer=optimizer_params(),
        model=optimizer_model(),
    log:
        "logs/eval/sft_rewrite_optimize.log",
    benchmark:
        "benchmarks/eval/sft_rewrite_optimize.tsv"
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    script:
        "../workflow_scripts/optimize_testset.py"


rule sft_rewrite_answer:
    input:
        optimized="results/sft_rewrite/optimized.parquet",
        source=lambda wc: config["eval"]["sft_rewrite"]["path"] or [],
    output:
        reproduce="results/sft_rewrite/reproduce.json",
        sft="results/sft_rewrite/train.json",
    params:
        target_name=config["eval"]["sft_rewrite"]["target"],
        target=lambda wc: eval_target_cfg(config["eval"]["sft_rewrite"]["target"]),
        endpoint=lambda wc: eval_target_endpoint(config["eval"]["sft_rewrite"]["target"]),
    log:
        "logs/eval/sft_rewrite_answer.log",
    benchmark:
        "benchmarks/eval/sft_rewrite_answer.tsv"
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    script:
        "../workflow_scripts/sft_rewrite.py"
