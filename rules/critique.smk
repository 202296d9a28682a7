# Stage: critique + sft. One critique call per pair (cached, rate-limited, budget-capped) ->
# results/critiques/{source}.parquet -> filtered SFT train/val + filter report.
# Every value that changes a result is a param (the template by path AND content hash, so an
# edit reruns). The LLM limits, the cache path, prices, budget_usd and max_error_fraction are
# read by the scripts from config on purpose: they change throughput or whether a run may
# finish, never what a finished run writes, so editing them must not rerun anything.
from bpo.critique import template_sha256 as _critique_template_sha256
from bpo.sources import SOURCES as _CRITIQUE_SOURCES


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


localrules:
    critique,
    critique_estimate,


rule critique:
    input:
        pairs="results/pairs/all.parquet",
    output:
        critiques="results/critiques/{source}.parquet",
    params:
        source=lambda wc: wc.source,
        endpoint_name=config["critique"]["endpoint"],
        endpoint=critique_endpoint(),
        settings=critique_settings(),
        template=config["critique"]["template"],
        template_sha256=critique_template_sha256(),
    wildcard_constraints:
        source="|".join(_CRITIQUE_SOURCES),
    log:
        "logs/critique/critique.{source}.log",
    benchmark:
        "benchmarks/critique/critique.{source}.tsv"
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
        mem_mb=2000,
    script:
        "../workflow_scripts/critique.py"


# Dry run of the critique stage: `snakemake critique_estimate` writes the calls, cache hits,
# tokens and cost it would make per source; nothing is sent. Not part of `all`; the answer
# depends on what is already cached, so ask again with `snakemake -f critique_estimate`.
rule critique_estimate:
    input:
        pairs="results/pairs/all.parquet",
    output:
        estimate="results/critiques/estimate.json",
    params:
        sources=active_sources(),
        endpoint_name=config["critique"]["endpoint"],
        endpoint=critique_endpoint(),
        settings=critique_settings(),
        template=config["critique"]["template"],
        template_sha256=critique_template_sha256(),
    log:
        "logs/critique/critique_estimate.log",
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=2000,
    script:
        "../workflow_scripts/critique_estimate.py"


rule sft:
    input:
        unpack(sft_inputs),
    output:
        train="results/sft/train.parquet",
        val="results/sft/val.parquet",
        report="results/sft/filter_report.json",
    params:
        settings=sft_settings(),
    log:
        "logs/critique/sft.log",
    benchmark:
        "benchmarks/critique/sft.tsv"
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=4000,
    script:
        "../workflow_scripts/sft.py"
