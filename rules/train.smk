# stage: train -- supervised fine-tuning of the prompt optimizer on the SFT pairs.
# Every result-relevant `train` config value is a param (an edit retrains); the DeepSpeed
# JSON is an input (editing the file retrains). `train.checkpoint` is read by the script on
# purpose: checkpoint settings never change the model.


rule train_optimizer:
    input:
        train="results/sft/train.parquet",
        val="results/sft/val.parquet",
        deepspeed=deepspeed_config_input(),
    output:
        model=directory("results/models/optimizer"),
        metrics="results/models/optimizer_metrics/train_metrics.parquet",
        loss_curve=report(
            "results/models/optimizer_metrics/loss_curve.png",
            caption="../report/loss_curve.rst",
            category="Optimizer training",
        ),
    params:
        base_model=train_cfg("base_model"),
        tiny=train_cfg("tiny"),
        attn_implementation=train_cfg("attn_implementation"),
        max_length=train_cfg("max_length"),
        epochs=train_cfg("epochs"),
        max_steps=train_cfg("max_steps"),
        global_batch_size=train_cfg("global_batch_size"),
        per_device_batch_size=train_cfg("per_device_batch_size"),
        learning_rate=train_cfg("learning_rate"),
        warmup_ratio=train_cfg("warmup_ratio"),
        lr_scheduler=train_cfg("lr_scheduler"),
        weight_decay=train_cfg("weight_decay"),
        adam_beta1=train_cfg("adam_beta1"),
        adam_beta2=train_cfg("adam_beta2"),
        adam_epsilon=train_cfg("adam_epsilon"),
        max_grad_norm=train_cfg("max_grad_norm"),
        precision=train_cfg("precision"),
        seed=train_cfg("seed"),
        deepspeed=train_cfg("deepspeed"),
        packing=train_cfg("packing"),
        gradient_checkpointing=train_cfg("gradient_checkpointing"),
        lora=train_cfg("lora"),
        logging_steps=train_cfg("logging_steps"),
        eval_steps=train_cfg("eval_steps"),
        cpu_ranks=train_cfg("cpu_ranks"),
    log:
        "logs/train/train_optimizer.log",
    benchmark:
        "benchmarks/train/train_optimizer.tsv"
    conda:
        "../envs/train.yaml"
    # One torch thread on CPU: the tiny default runs fastest so (OpenMP threads of a model
    # this small mostly wait on each other, badly so on shared cores). A bigger CPU model:
    # --set-threads train_optimizer=N. With GPUs the threads setting is not applied.
    threads: 1
    # Sized for the CPU default; profiles/slurm sets GPUs, memory and time for real runs
    # (bpo.launch reads the allocation and starts one rank per GPU).
    resources:
        gpu=0,
        cpus_per_task=1,
        mem_mb=8000,
        runtime=60,
        slurm_extra="",
    script:
        "../workflow_scripts/train.py"
