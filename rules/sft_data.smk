# stage: sft_data -- BPO for SFT data, the whole experiment (sft_data.activate, off by default).
# The same records of eval.sft_rewrite's file make two SFT sets; two students are trained on them
# with one recipe by the training stage's own script and code (train.py, bpo.train); each answers
# every active test set as a local hf target (answer_original_hf.py); their answers are paired
# into eval/{testset}/student_bpo/student_original/answers.parquet, which rule judge picks up like
# any other pair ("model B vs model A on the same prompt"), and the report names the comparison.


# Regenerating the baseline's answers calls an LLM: on the submit host, as every API rule.
localrules:
    sft_data_sets,


rule sft_data_sets:
    input:
        reproduce=result("sft_rewrite/reproduce.json"),
    output:
        student_original=result("sft_data/student_original.parquet"),
        student_bpo=result("sft_data/student_bpo.parquet"),
    log:
        log_file("sft_data/sft_data_sets.log"),
    benchmark:
        benchmark_file("sft_data/sft_data_sets.tsv")
    conda:
        "../envs/llm.yaml"
    resources:
        api=1,
        mem_mb=1000,
    params:
        settings=sft_data_settings(),
    script:
        "../workflow_scripts/sft_data_sets.py"


rule train_student:
    input:
        train=result("sft_data/{student}.parquet"),
        deepspeed=student_deepspeed_input(),
        base=wheel_model_input(student_base_model()),
    output:
        model=directory(result("models/{student}")),
        metrics=result("models/{student}_metrics/train_metrics.parquet"),
        loss_curve=report(
            result("models/{student}_metrics/loss_curve.png"),
            caption="../report/loss_curve.rst",
            category="SFT-data students",
        ),
    log:
        log_file("sft_data/train_{student}.log"),
    benchmark:
        benchmark_file("sft_data/train_{student}.tsv")
    wildcard_constraints:
        student=_names_regex(STUDENT_NAMES),
    conda:
        "../envs/train.yaml"
    threads: student_threads()
    resources:
        gpu=0,
        cpus_per_task=1,
        mem_mb=8000,
        runtime=60,
        slurm_extra="",
    params:
        settings=student_train_params(),
    script:
        "../workflow_scripts/train.py"


rule answer_student:
    input:
        testset=optimize_testset_input,
        model=result("models/{student}"),
    output:
        answers=result("eval/{testset}/{student}/original_answers.parquet"),
    log:
        log_file("eval/answer_{testset}_{student}.log"),
    benchmark:
        benchmark_file("eval/answer_{testset}_{student}.tsv")
    wildcard_constraints:
        student=_names_regex(STUDENT_NAMES),
    conda:
        "../envs/eval.yaml"
    threads: 2
    resources:
        mem_mb=16000,
    params:
        settings=student_answer_params,
    script:
        "../workflow_scripts/answer_original_hf.py"


rule pair_students:
    input:
        b=result("eval/{testset}/student_bpo/original_answers.parquet"),
        a=result("eval/{testset}/student_original/original_answers.parquet"),
    output:
        answers=result("eval/{testset}/student_bpo/student_original/answers.parquet"),
        prompts=result("eval/{testset}/student_bpo/student_original/prompts.parquet"),
    log:
        log_file("eval/pair_students_{testset}.log"),
    benchmark:
        benchmark_file("eval/pair_students_{testset}.tsv")
    conda:
        "../envs/eval.yaml"
    resources:
        mem_mb=1000,
    script:
        "../workflow_scripts/pair_students.py"
