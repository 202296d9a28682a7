"""Rule train_refined: DPO (TRL's DPOTrainer) from the round's start model on its preference pairs."""

from bpo.logging_setup import setup_logging

setup_logging(snakemake.log[0], config=snakemake.config)  # noqa: F821 (injected by the script directive)

from pathlib import Path  # noqa: E402

from bpo.refine.dpo import train_refined  # noqa: E402
from bpo.settings.refine import RefineTrainSettings  # noqa: E402
from bpo.settings.train import CheckpointRuntime  # noqa: E402

sm = snakemake  # noqa: F821
# Read at run time, not a param: checkpoint settings never change the model. The round's
# checkpoints sit beside its model (never the SFT run's folder).
checkpoint = CheckpointRuntime.from_config(sm.config, sm.output.model).replace(
    dir=str(Path(sm.output.model).parent / "checkpoints")
)
train_refined(
    sm.input.preferences,
    str(sm.input.model),
    {"model": sm.output.model, "metrics": sm.output.metrics, "loss_curve": sm.output.loss_curve},
    RefineTrainSettings.from_params(sm.params.settings),
    checkpoint,
    threads=sm.threads,
)
