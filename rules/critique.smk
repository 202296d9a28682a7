# Stage: critique. One critique call per pair (cached, rate-limited, budget-capped) ->
# results/critiques/{source}.parquet (rules/sft.smk filters them into the SFT train/val).
# Every value that changes a result is in the one settings param (the template by path AND
# content hash, so an edit reruns; a touch does not). The LLM limits, the cache path, prices,
# budget_usd and max_error_fraction are read by the scripts from config on purpose: they change throughput or whether a run may
# finish, never what a finished run writes, so editing them must not rerun anything.


localrules:
    critique,
    critique_estimate,


rule critique:
    input:
        pairs=result("pairs/all.parquet"),
    output:
        critiques=result("critiques/{source}.parquet"),
    log:
        log_file("critique/critique.{source}.log"),
    benchmark:
        benchmark_file("critique/critique.{source}.tsv")
    wildcard_constraints:
        source="|".join(SOURCES),
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
        mem_mb=2000,
    params:
        settings=critique_settings(),
    script:
        "../workflow_scripts/critique.py"


# Dry run of the critique stage: `snakemake critique_estimate` writes the calls, cache hits,
# tokens and cost it would make per source; nothing is sent. Not part of `all`; the answer
# depends on what is already cached, so ask again with `snakemake -f critique_estimate`.
rule critique_estimate:
    input:
        pairs=result("pairs/all.parquet"),
    output:
        estimate=result("critiques/estimate.json"),
    log:
        log_file("critique/critique_estimate.log"),
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=2000,
    params:
        settings=critique_estimate_settings(),
    script:
        "../workflow_scripts/critique_estimate.py"
