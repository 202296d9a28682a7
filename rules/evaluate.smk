# stage: evaluate -- each optimizer's test prompts, target answers (original questions once per
# test set and target, shared by every optimizer), pairwise judging; paths
# eval/{testset}/{optimizer}/[{target}/].
# Every config value that changes a result is a param, so editing it reruns exactly the rules
# it affects (e.g. a new judge model reruns judge and report, not optimize or answer). The LLM
# rules pass ONE param, `settings` (bpo/settings/evaluate.py, endpoint included); LLM limits,
# prices and the cache path are read by the scripts from config on purpose: throughput only.


localrules:
    download_testset,
    optimize_identity,
    optimize_llm_rewrite,
    answer_original,
    answer,
    judge,
    # a conversation interleaves the optimizer's rewrites with the target's API calls turn by
    # turn, so it stays with the other LLM callers on the submit host
    converse_original,
    converse,
    judge_turns,
    sft_rewrite_answer,


# Fetched on the submit host (compute nodes often have no internet); building the DAG never
# touches the network.
rule download_testset:
    output:
        testset="data/testsets/{testset}/{filename}",
    log:
        log_file("eval/download_{testset}_{filename}.log"),
    wildcard_constraints:
        testset=_names_regex(downloaded_testsets()),
    conda:
        "../envs/eval.yaml"
    params:
        url=lambda wc: config["eval"]["testsets"][wc.testset]["url"],
    script:
        "../workflow_scripts/download_testset.py"


# One rule per optimizer kind (eval.optimizers.<name>.kind), each constrained to the names of
# its kind: a local model generates on a compute node; identity and llm_rewrite run here.
rule optimize_testset:
    input:
        testset=optimize_testset_input,
        model=optimizer_model_input,
    output:
        optimized=result("eval/{testset}/{optimizer}/optimized.parquet"),
    log:
        log_file("eval/optimize_{testset}_{optimizer}.log"),
    benchmark:
        benchmark_file("eval/optimize_{testset}_{optimizer}.tsv")
    wildcard_constraints:
        optimizer=_names_regex(eval_optimizers("trained", "model", "refined")),
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    params:
        settings=optimize_settings,
    script:
        "../workflow_scripts/optimize.py"


rule optimize_identity:
    input:
        testset=optimize_testset_input,
    output:
        optimized=result("eval/{testset}/{optimizer}/optimized.parquet"),
    log:
        log_file("eval/optimize_{testset}_{optimizer}.log"),
    benchmark:
        benchmark_file("eval/optimize_{testset}_{optimizer}.tsv")
    wildcard_constraints:
        optimizer=_names_regex(eval_optimizers("identity")),
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=1000,
    params:
        settings=optimize_settings,
    script:
        "../workflow_scripts/optimize.py"


rule optimize_llm_rewrite:
    input:
        testset=optimize_testset_input,
    output:
        optimized=result("eval/{testset}/{optimizer}/optimized.parquet"),
    log:
        log_file("eval/optimize_{testset}_{optimizer}.log"),
    benchmark:
        benchmark_file("eval/optimize_{testset}_{optimizer}.tsv")
    wildcard_constraints:
        optimizer=_names_regex(eval_optimizers("llm_rewrite")),
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    params:
        settings=optimize_settings,
    script:
        "../workflow_scripts/optimize.py"


# Each target answers the original questions of a test set once; every optimizer's answers
# reuse them (only the rewritten questions are answered in the optimizer's branch).
rule answer_original:
    input:
        testset=optimize_testset_input,
    output:
        answers=result("eval/{testset}/{target}/original_answers.parquet"),
    log:
        log_file("eval/answer_original_{testset}_{target}.log"),
    benchmark:
        benchmark_file("eval/answer_original_{testset}_{target}.tsv")
    wildcard_constraints:
        target=_names_regex(eval_targets("endpoint")),
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    params:
        settings=answer_original_settings,
    script:
        "../workflow_scripts/answer_original.py"


rule answer:
    input:
        optimized=result("eval/{testset}/{optimizer}/optimized.parquet"),
        original=result("eval/{testset}/{target}/original_answers.parquet"),
    output:
        answers=result("eval/{testset}/{optimizer}/{target}/answers.parquet"),
    log:
        log_file("eval/answer_{testset}_{optimizer}_{target}.log"),
    benchmark:
        benchmark_file("eval/answer_{testset}_{optimizer}_{target}.tsv")
    wildcard_constraints:
        target=_names_regex(eval_targets("endpoint")),
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    params:
        settings=answer_settings,
    script:
        "../workflow_scripts/answer.py"


# A local HF target generates on a compute node (GPU), so its rules are separate, non-local.
rule answer_original_hf:
    input:
        testset=optimize_testset_input,
        model=hf_target_model_input,
    output:
        answers=result("eval/{testset}/{target}/original_answers.parquet"),
    log:
        log_file("eval/answer_original_{testset}_{target}.log"),
    benchmark:
        benchmark_file("eval/answer_original_{testset}_{target}.tsv")
    wildcard_constraints:
        target=_names_regex(eval_targets("hf")),
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        settings=answer_original_hf_settings,
    script:
        "../workflow_scripts/answer_original_hf.py"


rule answer_hf:
    input:
        optimized=result("eval/{testset}/{optimizer}/optimized.parquet"),
        original=result("eval/{testset}/{target}/original_answers.parquet"),
        model=hf_target_model_input,
    output:
        answers=result("eval/{testset}/{optimizer}/{target}/answers.parquet"),
    log:
        log_file("eval/answer_{testset}_{optimizer}_{target}.log"),
    benchmark:
        benchmark_file("eval/answer_{testset}_{optimizer}_{target}.tsv")
    wildcard_constraints:
        target=_names_regex(eval_targets("hf")),
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        settings=answer_hf_settings,
    script:
        "../workflow_scripts/answer_hf.py"


rule judge:
    input:
        answers=result("eval/{testset}/{optimizer}/{target}/answers.parquet"),
    output:
        judgments=result("eval/{testset}/{optimizer}/{target}/judgments.parquet"),
    log:
        log_file("eval/judge_{testset}_{optimizer}_{target}.log"),
    benchmark:
        benchmark_file("eval/judge_{testset}_{optimizer}_{target}.tsv")
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    params:
        settings=judge_settings,
    script:
        "../workflow_scripts/judge.py"


# Multi-turn test sets (format mt_bench; bpo/eval/conversation.py): each target plays the original
# conversations once; each optimizer x target plays the optimized ones (every user message
# rewritten seeing the optimized conversation so far, then answered), keeping the originals
# beside them; the judge compares the two per turn. One process holds the optimizer and the
# target, since each turn's rewrite needs the previous turn's answer.
rule converse_original:
    input:
        testset=optimize_testset_input,
        model=target_model_input,
    output:
        conversations=result("eval/{testset}/{target}/original_conversations.parquet"),
    log:
        log_file("eval/converse_original_{testset}_{target}.log"),
    benchmark:
        benchmark_file("eval/converse_original_{testset}_{target}.tsv")
    wildcard_constraints:
        testset=_names_regex(multi_turn_testsets()),
        target=_names_regex(eval_targets()),
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        api=1,
    params:
        settings=converse_original_settings,
    script:
        "../workflow_scripts/converse_original.py"


rule converse:
    input:
        testset=optimize_testset_input,
        original=result("eval/{testset}/{target}/original_conversations.parquet"),
        optimizer_model=optimizer_model_input,
        model=target_model_input,
    output:
        conversations=result("eval/{testset}/{optimizer}/{target}/conversations.parquet"),
    log:
        log_file("eval/converse_{testset}_{optimizer}_{target}.log"),
    benchmark:
        benchmark_file("eval/converse_{testset}_{optimizer}_{target}.tsv")
    wildcard_constraints:
        testset=_names_regex(multi_turn_testsets()),
        optimizer=_names_regex(eval_optimizers()),
        target=_names_regex(eval_targets()),
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=16000,
        api=1,
    params:
        settings=converse_settings,
    script:
        "../workflow_scripts/converse.py"


rule judge_turns:
    input:
        conversations=result("eval/{testset}/{optimizer}/{target}/conversations.parquet"),
    output:
        judgments=result("eval/{testset}/{optimizer}/{target}/turn_judgments.parquet"),
    log:
        log_file("eval/judge_turns_{testset}_{optimizer}_{target}.log"),
    benchmark:
        benchmark_file("eval/judge_turns_{testset}_{optimizer}_{target}.tsv")
    wildcard_constraints:
        testset=_names_regex(multi_turn_testsets()),
        optimizer="[^/]+",
        target="[^/]+",
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    params:
        settings=judge_turns_settings,
    script:
        "../workflow_scripts/judge.py"


# Optional: BPO for SFT data (the paper's alpaca_reproduce), off by default.
rule sft_rewrite_optimize:
    input:
        testset=sft_rewrite_optimize_input,
        model=sft_rewrite_optimizer_model_input,
    output:
        optimized=result("sft_rewrite/optimized.parquet"),
    log:
        log_file("eval/sft_rewrite_optimize.log"),
    benchmark:
        benchmark_file("eval/sft_rewrite_optimize.tsv")
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=8000,
    params:
        settings=sft_rewrite_optimize_settings,
    script:
        "../workflow_scripts/optimize.py"


rule sft_rewrite_answer:
    input:
        optimized=result("sft_rewrite/optimized.parquet"),
        source=lambda wc: config["eval"]["sft_rewrite"]["path"] or [],
        model=sft_rewrite_target_model_input,
    output:
        reproduce=result("sft_rewrite/reproduce.json"),
        sft=result("sft_rewrite/train.json"),
    log:
        log_file("eval/sft_rewrite_answer.log"),
    benchmark:
        benchmark_file("eval/sft_rewrite_answer.tsv")
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    params:
        settings=sft_rewrite_answer_settings,
    script:
        "../workflow_scripts/sft_rewrite.py"
