"""Kept only for ``bpo.inference``'s import of the model-folder record name; training lives in
bpo.train.{spec,checkpoint,model,run,artifacts,launch}. Remove once bpo.inference imports
:data:`bpo.train.artifacts.TRAIN_CONFIG_NAME`."""

from bpo.train.artifacts import TRAIN_CONFIG_NAME

__all__ = ["TRAIN_CONFIG_NAME"]
