# stage: train -- supervised fine-tuning of the prompt optimizer on the SFT pairs.
# Every result-relevant `train` config value is in the one `settings` param (TrainSettings'
# canonical form: an edit retrains); the DeepSpeed JSON is an input (editing the file retrains).
# `train.checkpoint` is read by the script on purpose: checkpoint settings never change the model.


rule train_optimizer:
    input:
        train=result("sft/train.parquet"),
        val=result("sft/val.parquet"),
        deepspeed=deepspeed_config_input(),
    output:
        model=directory(result("models/optimizer")),
        metrics=result("models/optimizer_metrics/train_metrics.parquet"),
        loss_curve=report(
            result("models/optimizer_metrics/loss_curve.png"),
            caption="../report/loss_curve.rst",
            category="Optimizer training",
        ),
    params:
        settings=train_settings(),
    log:
        log_file("train/train_optimizer.log"),
    benchmark:
        benchmark_file("train/train_optimizer.tsv")
    conda:
        "../envs/train.yaml"
    # One torch thread on CPU: the tiny default runs fastest so (OpenMP threads of a model
    # this small mostly wait on each other, badly so on shared cores). A bigger CPU model:
    # --set-threads train_optimizer=N. With GPUs the threads setting is not applied.
    threads: 1
    # Sized for the CPU default; profiles/slurm sets GPUs, memory and time for real runs
    # (bpo.train.launch reads the allocation and starts one rank per GPU).
    resources:
        gpu=0,
        cpus_per_task=1,
        mem_mb=8000,
        runtime=60,
        slurm_extra="",
    script:
        "../workflow_scripts/train.py"
