"""Greedy answers and yes/no scores over the one-step decoder, as ``generate`` does it with default settings."""

from __future__ import annotations

from collections.abc import Callable

import torch

from blip_serving.spec import BlipSpec

StepFunction = Callable[[torch.Tensor, int, torch.Tensor, torch.Tensor], torch.Tensor]


def answer_buffer(count: int, spec: BlipSpec) -> torch.Tensor:
    """[N, answer_tokens]: [DEC] then [PAD]; the fixed-size buffer the decoder reads its prefix from."""
    tokens = torch.full((count, spec.answer_tokens), spec.pad_token_id, dtype=torch.long)
    tokens[:, 0] = spec.bos_token_id
    return tokens


def first_step(step: StepFunction, question_embeds: torch.Tensor, question_mask: torch.Tensor, spec: BlipSpec):
    """Logits [N, vocab] of the first answer token: the only step that scores-only requests run."""
    count = question_embeds.shape[0]
    logits = step(answer_buffer(count, spec), 0, question_embeds, question_mask)
    if logits.shape[0] != count:
        raise RuntimeError(f"decoder returned {logits.shape[0]} rows for {count} questions")
    return logits


def yes_probability(first_logits: torch.Tensor, spec: BlipSpec) -> torch.Tensor:
    """P(yes) against no: softmax over the two tokens' first-step logits, one float per question."""
    pair = first_logits[:, [spec.yes_token_id, spec.no_token_id]].float()
    return torch.softmax(pair, dim=-1)[:, 0].cpu()


def greedy_decode(
    step: StepFunction,
    question_embeds: torch.Tensor,
    question_mask: torch.Tensor,
    spec: BlipSpec,
    first_logits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Answer token ids [N, answer_tokens]: [DEC], then argmax tokens until [SEP], then [PAD].

    Finished rows keep receiving [PAD] as in ``generate``; the loop stops when every row has emitted [SEP] or the
    length is reached. ``first_logits``, when the caller already ran the first step for scores, is reused.
    """
    count = question_embeds.shape[0]
    tokens = answer_buffer(count, spec)
    finished = torch.zeros(count, dtype=torch.bool)
    for position in range(spec.answer_tokens - 1):
        if position == 0 and first_logits is not None:
            logits = first_logits
        else:
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
