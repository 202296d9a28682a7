# The SFT dataset of the optimizer (bpo/sft): the critiques filtered by the paper's rules, or a
# ready-made BPO-format dataset (sft.source); one `settings` param (bpo/settings/sft.py).


rule sft:
    input:
        unpack(sft_inputs),
    output:
        train=result("sft/train.parquet"),
        val=result("sft/val.parquet"),
        report=result("sft/filter_report.json"),
    log:
        log_file("critique/sft.log"),
    benchmark:
        benchmark_file("critique/sft.tsv")
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=4000,
    params:
        settings=sft_settings(),
    script:
        "../workflow_scripts/sft.py"
