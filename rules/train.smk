# stage: train -- supervised fine-tuning of the prompt optimizer on the SFT pairs.
# Every result-relevant `train` config value is in the one `settings` param (TrainSettings'
# canonical form: an edit retrains); the DeepSpeed JSON is an input (editing the file retrains).
# `train.checkpoint` is read by the script on purpose: checkpoint settings never change the model.


rule train_optimizer:
    input:
        train=result("sft/train.parquet"),
        val=result("sft/val.parquet"),
        deepspeed=deepspeed_config_input(),
        base=wheel_model_input(config["train"]["base_model"]),
    output:
        model=directory(result("models/optimizer")),
        metrics=result("models/optimizer_metrics/train_metrics.parquet"),
        loss_curve=report(
            result("models/optimizer_metrics/loss_curve.png"),
            caption="../report/loss_curve.rst",
            category="Optimizer training",
        ),
    log:
        log_file("train/train_optimizer.log"),
    benchmark:
        benchmark_file("train/train_optimizer.tsv")
    conda:
        "../envs/train.yaml"
    # CPU threads: see train_threads(); --set-threads train_optimizer=N overrides. With GPUs
    # the threads setting is not applied.
    threads: train_threads()
    # Sized for the CPU default; profiles/slurm sets GPUs, memory and time for real runs
    # (bpo.train.launch reads the allocation and starts one rank per GPU).
    resources:
        gpu=0,
        cpus_per_task=1,
        mem_mb=8000,
        runtime=60,
        slurm_extra="",
    params:
        settings=train_settings(),
    script:
        "../workflow_scripts/train.py"
