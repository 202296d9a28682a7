# stage: refine -- the optimizer learns from the target's judged answers to its own rewrites
# (off by default: refine.activate). Per round r (results/<run>/refine/round<r>/):
# candidates -> candidate_answers -> candidate_judgments -> preferences -> train_refined.
# Round 1 samples from the SFT optimizer (models/optimizer), round r from round r-1's model.
# Each rule passes ONE param, its bpo.settings.refine (or .evaluate) class's canonical form (plus the round);
# LLM limits, cache, prices and train.checkpoint are read at run time (edits rerun nothing).
from bpo.settings.evaluate import CandidateAnswerSettings, CandidateJudgeSettings
from bpo.settings.refine import (
    CandidateSettings,
    PreferenceSettings,
    RefineEstimateSettings,
    RefineTrainSettings,
)


localrules:
    candidate_answers,
    candidate_judgments,
    preferences,
    refine_estimate,


# Dry run of round 1's LLM stages: `snakemake refine_estimate` writes the calls, cache hits,
# tokens and USD that candidate_answers and candidate_judgments would pay, from the pool alone
# (the optimizer is not run, nothing is sent). Not part of `all`; the cache hits depend on what
# is cached by then, so ask again with `snakemake -f refine_estimate`.
rule refine_estimate:
    input:
        pairs=result("pairs/all.parquet"),
        testsets=lambda wc: refine_testset_inputs(),
    output:
        estimate=result("refine/estimate.json"),
    log:
        log_file("refine/refine_estimate.log"),
    benchmark:
        benchmark_file("refine/refine_estimate.tsv")
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=2000,
    params:
        settings=lambda wc: RefineEstimateSettings.from_config(config).canonical(),
    script:
        "../workflow_scripts/refine_estimate.py"


rule candidates:
    input:
        pairs=result("pairs/all.parquet"),
        sft_val=result("sft/val.parquet"),
        model=refine_start_model,
        testsets=lambda wc: refine_testset_inputs(),
    output:
        candidates=refine_dir("candidates.parquet"),
    log:
        log_file("refine/round{round}/candidates.log"),
    benchmark:
        benchmark_file("refine/round{round}/candidates.tsv")
    wildcard_constraints:
        round=r"[1-9][0-9]*",
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        settings=lambda wc: CandidateSettings.from_config(config).canonical(),
        round=lambda wc: int(wc.round),
    script:
        "../workflow_scripts/refine_candidates.py"


rule candidate_answers:
    input:
        candidates=refine_dir("candidates.parquet"),
    output:
        answers=refine_dir("candidate_answers.parquet"),
    log:
        log_file("refine/round{round}/candidate_answers.log"),
    benchmark:
        benchmark_file("refine/round{round}/candidate_answers.tsv")
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    params:
        settings=lambda wc: CandidateAnswerSettings.from_config(config).canonical(),
    script:
        "../workflow_scripts/refine_answers.py"


rule candidate_judgments:
    input:
        answers=refine_dir("candidate_answers.parquet"),
    output:
        judgments=refine_dir("candidate_judgments.parquet"),
    log:
        log_file("refine/round{round}/candidate_judgments.log"),
    benchmark:
        benchmark_file("refine/round{round}/candidate_judgments.tsv")
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
    params:
        settings=lambda wc: CandidateJudgeSettings.from_config(config).canonical(),
    script:
        "../workflow_scripts/refine_judge.py"


rule preferences:
    input:
        candidates=refine_dir("candidates.parquet"),
        judgments=refine_dir("candidate_judgments.parquet"),
    output:
        preferences=refine_dir("preferences.parquet"),
        report=refine_dir("preferences_report.json"),
    log:
        log_file("refine/round{round}/preferences.log"),
    benchmark:
        benchmark_file("refine/round{round}/preferences.tsv")
    conda:
        "../envs/llm.yaml"
    resources:
        mem_mb=2000,
    params:
        settings=lambda wc: PreferenceSettings.from_config(config).canonical(),
    script:
        "../workflow_scripts/refine_preferences.py"


# Sized like train_optimizer: profiles/slurm sets GPUs, memory and time for real runs.
rule train_refined:
    input:
        preferences=refine_dir("preferences.parquet"),
        model=refine_start_model,
        deepspeed=deepspeed_config_input(),
    output:
        model=directory(refine_dir("model")),
        metrics=refine_dir("metrics/train_metrics.parquet"),
        loss_curve=report(
            refine_dir("metrics/loss_curve.png"),
            caption="../report/loss_curve.rst",
            category="Optimizer refinement",
        ),
    log:
        log_file("refine/round{round}/train_refined.log"),
    benchmark:
        benchmark_file("refine/round{round}/train_refined.tsv")
    conda:
        "../envs/train.yaml"
    threads: train_threads()
    resources:
        gpu=0,
        cpus_per_task=1,
        mem_mb=8000,
        runtime=60,
        slurm_extra="",
    params:
        settings=lambda wc: RefineTrainSettings.from_config(config).canonical(),
    script:
        "../workflow_scripts/train_refined.py"
