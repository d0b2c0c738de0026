"""Greedy answer generation over the one-step decoder, as ``generate`` does it with default settings."""

from __future__ import annotations

from collections.abc import Callable

import torch

from blip_serving.spec import BlipSpec

StepFunction = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor], torch.Tensor]


def greedy_decode(
    step: StepFunction, question_embeds: torch.Tensor, question_mask: torch.Tensor, spec: BlipSpec
) -> torch.Tensor:
    """Answer token ids [N, answer_tokens]: [DEC], then argmax tokens until [SEP], then [PAD].

    Finished rows keep receiving [PAD] as in ``generate``; the loop stops when every row has emitted [SEP] or the
    length is reached. The fixed-length buffer is what the traced decoder takes at every step.
    """
    count = question_embeds.shape[0]
    tokens = torch.full((count, spec.answer_tokens), spec.pad_token_id, dtype=torch.long)
    tokens[:, 0] = spec.bos_token_id
    finished = torch.zeros(count, dtype=torch.bool)
    for position in range(spec.answer_tokens - 1):
        logits = step(tokens, position, question_embeds, question_mask)
        if logits.shape[0] != count:
            raise RuntimeError(f"decoder returned {logits.shape[0]} rows for {count} questions")
        next_tokens = logits.argmax(dim=-1).cpu()
        next_tokens = torch.where(finished, torch.full_like(next_tokens, spec.pad_token_id), next_tokens)
        tokens[:, position + 1] = next_tokens
        finished |= next_tokens == spec.sep_token_id
        if bool(finished.all()):
            break
    return tokens
