# Stage: data. Raw human-preference datasets -> normalized pairs per source -> all pairs.
# Cleaning, sampling and dedup are documented in bpo/pairs.py; helpers in rules/common.smk.


rule pairs_source:
    input:
        unpack(pairs_source_inputs),
    output:
        pairs=result("pairs/{source}.parquet"),
        stats=result("pairs/{source}.stats.json"),
    log:
        log_file("data/pairs_source.{source}.log"),
    benchmark:
        benchmark_file("data/pairs_source.{source}.tsv")
    wildcard_constraints:
        source="|".join(SOURCES),
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=pairs_source_settings,
    script:
        "../workflow_scripts/pairs_source.py"


rule pairs_merge:
    input:
        pairs=expand(result("pairs/{source}.parquet"), source=active_sources()),
        stats=expand(result("pairs/{source}.stats.json"), source=active_sources()),
    output:
        pairs=result("pairs/all.parquet"),
        stats=result("pairs/all.stats.json"),
    log:
        log_file("data/pairs_merge.log"),
    benchmark:
        benchmark_file("data/pairs_merge.tsv")
    conda:
        "../envs/data.yaml"
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        settings=pairs_merge_settings(),
    script:
        "../workflow_scripts/pairs_merge.py"
