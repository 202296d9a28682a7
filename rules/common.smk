# Helpers shared by every rule file. Validation runs first so a bad key fails at parse time.
from snakemake.utils import validate


validate(config, schema="../config/schema.yaml")


# Rules that call an LLM API run on the submit host: compute nodes often have no internet.
localrules:
    all,


def active_sources():
    """Names of the preference sources switched on in config (in config order)."""
    return [name for name, cfg in config["sources"].items() if cfg["activate"]]


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
    return targets
