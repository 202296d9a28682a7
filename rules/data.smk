# Stage: data. Raw human-preference datasets -> normalized pairs per source -> all pairs.
# Cleaning, sampling and dedup are documented in bpo/pairs.py; helpers in rules/common.smk.


rule pairs_source:
    input:
        unpack(pairs_source_inputs),
    output:
        pairs="results/pairs/{source}.parquet",
        stats="results/pairs/{source}.stats.json",
    params:
        settings=pairs_source_settings,
    wildcard_constraints:
        source="|".join(SOURCES),
    log:
        "logs/data/pairs_source.{source}.log",
    benchmark:
        "benchmarks/data/pairs_source.{source}.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/pairs_source.py"


rule pairs_merge:
    input:
        pairs=expand("results/pairs/{source}.parquet", source=active_sources()),
        stats=expand("results/pairs/{source}.stats.json", source=active_sources()),
    output:
        pairs="results/pairs/all.parquet",
        stats="results/pairs/all.stats.json",
    params:
        settings=pairs_merge_settings(),
    log:
        "logs/data/pairs_merge.log",
    benchmark:
        "benchmarks/data/pairs_merge.tsv"
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=15,
    script:
        "../workflow_scripts/pairs_merge.py"
