"""Rule train_optimizer: fine-tune the prompt optimizer (one process or torchrun ranks)."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0])  # noqa: F821

from bpo.launch import launch_training  # noqa: E402
from bpo.train.trainer import HPARAM_DEFAULTS, make_spec  # noqa: E402

sm = snakemake  # noqa: F821
spec = make_spec(
    train=sm.input.train,
    val=sm.input.val,
    model_dir=sm.output.model,
    metrics=sm.output.metrics,
    loss_curve=sm.output.loss_curve,
    hparams={key: getattr(sm.params, key) for key in HPARAM_DEFAULTS},
    # Not a param on purpose: checkpoint settings never change the model.
    checkpoint=sm.config["train"]["checkpoint"],
)
launch_training(spec, threads=sm.threads)
