"""The prompt optimizer's input template: the one place that wraps a user prompt.

Training (``bpo.train.data``) and inference (``bpo.inference``) both call
:func:`build_prompt`, so the model sees at inference exactly the text it was
trained on. The optimizer then continues with the rewritten prompt and EOS;
nothing after the template's last line belongs to the input.

The wording is this project's own. It is plain text rather than a model's chat
template on purpose: the tiny from-scratch model has no chat template, and a
fixed text keeps the training target independent of the base model.
"""

from __future__ import annotations

# Bump when the wording changes: a trained optimizer records the version it saw
# (bpo_train_config.json) and inference refuses a mismatch instead of silently
# degrading.
TEMPLATE_VERSION = 1

# Short on purpose: a fine-tuned optimizer learns the task from its data, and every template
# token is paid again in every training example and every rewrite.
_HEADER = (
    "Rewrite the prompt below so that an AI assistant answers it more helpfully, correctly and "
    "safely. Keep all of its information and any attached text unchanged; do not answer it."
)

TEMPLATE = "{header}\n\n[Original prompt]\n{prompt}\n\n[Improved prompt]\n"


def build_prompt(user_prompt: str) -> str:
    """The optimizer's input for ``user_prompt``; its output continues right after it."""
    if not isinstance(user_prompt, str):
        raise TypeError(f"build_prompt: expected a str prompt, got {type(user_prompt).__name__}")
    return TEMPLATE.format(header=_HEADER, prompt=user_prompt.strip())
