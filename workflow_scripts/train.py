"""Rules train_optimizer and train_student: fine-tune a model on SFT pairs (one process or torchrun ranks)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bpo.settings.train import CheckpointRuntime, TrackingRuntime, TrainSettings  # noqa: E402
from bpo.train.launch import launch_training  # noqa: E402
from bpo.train.spec import TrainSpec  # noqa: E402

sm = snakemake  # noqa: F821
spec = TrainSpec(
    settings=TrainSettings.from_params(sm.params.settings),
    # Read at run time, not a param: checkpoint settings never change the model.
    checkpoint=CheckpointRuntime.from_config(sm.config, sm.output.model),
    train=sm.input.train,
    val=sm.input.get("val"),  # the students have no validation split
    model_dir=sm.output.model,
    metrics=sm.output.metrics,
    loss_curve=sm.output.loss_curve,
    # Runtime too: a tracker watches the run. TensorBoard's files go beside the rule's log, one
    # folder per start (logs/<run_name>/train/tensorboard/<time>).
    tracking=TrackingRuntime.from_config(
        sm.config, str(Path(sm.log[0]).parent / "tensorboard" / time.strftime("%Y%m%d-%H%M%S"))
    ),
)
launch_training(spec, threads=sm.threads)
