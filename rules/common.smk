# Helpers shared by every rule file. Validation runs first so a bad key fails at parse time.
from snakemake.utils import validate


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
