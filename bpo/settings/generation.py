"""How a local model generates text (:mod:`bpo.generation`): the engine and the decoding.

One class for every caller (optimizer inference, local HF targets, later local LLM endpoints);
each config section spells it its own way, so :meth:`GenerationSettings.from_config` takes the
section's dotted key and maps its names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from bpo.settings.base import Settings, SettingsError, config_section

# auto: lean where the model has a plain full-attention KV cache, else hf-generate; vLLM only
# when chosen (it is a different environment: envs/vllm.yaml).
ENGINES = ("auto", "lean", "hf-generate", "vllm")
# The sft_data students answer as hf targets do, with the same names for the same things.
STUDENT_ANSWER_KEY = "sft_data.student.answer"


@dataclass(frozen=True)
class GenerationSettings(Settings):
    engine: str  # one of ENGINES
    temperature: float
    top_p: float
    max_new_tokens: int
    batch_size: int  # prompts decoded together (sampled output depends on it)
    seed: int
    greedy: bool

    def __post_init__(self) -> None:
        # settings built in code (CLI, tests, a later local endpoint) skip the schema
        if self.engine not in ENGINES:
            raise SettingsError(f"generation engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.batch_size < 1:
            raise SettingsError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise SettingsError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not self.greedy and not self.temperature > 0:
            raise SettingsError(f"temperature must be > 0 for sampling, got {self.temperature} (use greedy decoding)")
        if not self.greedy and not 0 < self.top_p <= 1:
            raise SettingsError(f"top_p must be in (0, 1], got {self.top_p}")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], key: str) -> Self:
        """From ``eval.optimizers.<name>`` (its own names) or ``eval.targets.<name>`` of kind hf, whose
        names are the endpoint targets' (temperature 0 = greedy; seed null = 0). Both call the token
        limit ``max_tokens`` in the config, as every LLM call does; here it is the engine's ``max_new_tokens``."""
        section = config_section(config, key)
        if key.startswith("eval.optimizers."):
            for field in ("top_p", "max_tokens", "seed"):
                if section[field] is None:
                    raise SettingsError(
                        f"config {key}.{field}: a local optimizer model needs a value (null is "
                        "only for kind llm_rewrite, where it means the field is not sent)"
                    )
            values = {f: section[f] for f in cls.field_names() if f != "max_new_tokens"}
            return cls.from_mapping({**values, "max_new_tokens": section["max_tokens"]}, key)
        if key.startswith("eval.targets.") or key == STUDENT_ANSWER_KEY:
            if section["max_tokens"] is None:
                raise SettingsError(f"config {key}.max_tokens: an hf target needs a value (null is for endpoints)")
            return cls(
                engine=section["engine"],
                temperature=section["temperature"],
                top_p=1.0 if section["top_p"] is None else section["top_p"],
                max_new_tokens=section["max_tokens"],
                batch_size=section["batch_size"],
                seed=section["seed"] or 0,
                greedy=section["temperature"] == 0,
            )
        raise SettingsError(f"config {key}: not a section with generation settings")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))
