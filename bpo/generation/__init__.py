"""Every way this project generates text with a local model.

Contract: a model is loaded once (:func:`load_model`); token-id prompts (or chat conversations)
go in with a :class:`bpo.settings.generation.GenerationSettings`; texts, token counts and the
:class:`EngineRecord` of the engine that actually ran come out. Writers of artifacts made from
the texts put ``EngineRecord.metadata()`` into the Parquet metadata.

Engines: ``lean`` (this project's continuous-batching loop, :mod:`bpo.generation.lean`),
``hf-generate`` (transformers ``generate`` on static batches) and ``vllm`` (imported only when
chosen). ``auto`` = ``lean`` where the model has a plain full-attention KV cache, else
``hf-generate``. Prompt formats are the caller's business (optimizer template, chat template).
"""

from bpo.generation.engines import EngineRecord, Generated, Generation, generate, generate_chat, resolve_engine
from bpo.generation.model import LocalModel, load_model
from bpo.settings.generation import ENGINES, GenerationSettings

__all__ = [
    "ENGINES",
    "EngineRecord",
    "Generated",
    "Generation",
    "GenerationSettings",
    "LocalModel",
    "generate",
    "generate_chat",
    "load_model",
    "resolve_engine",
]
