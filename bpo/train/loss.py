"""The training loss with logits only where they are scored.

An SFT example's loss covers its target (the optimized prompt and EOS), often under half of
its tokens. The model's own loss computes the vocabulary-sized logits, their fp32 copy and the
log-softmax at every position, prompt and padding included; for SmolLM2 (a 49,152-token
vocabulary) that is a large share of a CPU step. Here the model is asked for the logits of the
positions whose next token is a target in some row of the batch (``logits_to_keep`` as
indices), and the same cross-entropy is taken there: the same loss and gradients, without the
unscored positions.
"""

from __future__ import annotations

from bpo.train.data import IGNORE_INDEX


def scored_positions(labels):
    """Sequence positions ``p`` whose next label is a target in at least one row (logits at ``p``
    predict token ``p + 1``): indices into the sequence dimension, same for every row."""
    return (labels[:, 1:] != IGNORE_INDEX).any(0).nonzero().squeeze(1)


def target_logits_loss(model, inputs, num_items_in_batch=None):
    """The causal-LM loss of ``inputs`` (with ``labels``) from the scored positions' logits only;
    as transformers' loss: the mean over target tokens, or their sum over ``num_items_in_batch``
    (the Trainer's count over an accumulated batch). None when no position is scored."""
    import torch

    labels = inputs["labels"]
    keep = scored_positions(labels)
    if keep.numel() == 0:
        return None
    outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, logits_to_keep=keep)
    logits = outputs.logits.float()
    targets = labels[:, keep + 1].to(logits.device)
    reduction = "mean" if num_items_in_batch is None else "sum"
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction=reduction
    )
    if num_items_in_batch is not None:
        loss = loss / (
            num_items_in_batch.to(loss.device) if torch.is_tensor(num_items_in_batch) else num_items_in_batch
        )
    return loss
