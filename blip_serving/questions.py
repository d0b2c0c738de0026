"""Questions at the boundary: decode, validate, and tokenize into the smallest length bucket that holds them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from blip_serving.errors import InvalidInputError


def decode_questions(raw: Any, *, max_questions: int) -> list[str]:
    """QUESTIONS tensor (BYTES) -> UTF-8 strings, refusing empty, blank, non-UTF-8 or too many questions."""
    values = np.asarray(raw, dtype=object).reshape(-1)
    if values.size == 0:
        raise InvalidInputError("QUESTIONS is empty: send at least one question")
    if values.size > max_questions:
        raise InvalidInputError(f"QUESTIONS has {values.size} questions; the limit is {max_questions} per request")
    questions = []
    for index, value in enumerate(values, start=1):
        if isinstance(value, str):
            text = value
        else:
            try:
                text = bytes(value).decode("utf-8")
            except UnicodeDecodeError as error:
                raise InvalidInputError(
                    f"question {index} is not valid UTF-8: {error.reason} at byte {error.start}"
                ) from error
        if not text.strip():
            raise InvalidInputError(f"question {index} is empty")
        questions.append(text)
    return questions


class QuestionTokenizer:
    """The checkpoint's tokenizer; a frame's questions are padded together to the smallest bucket holding the
    longest one (short behavior questions do not pay for long ones), and the real mask is kept."""

    def __init__(self, tokenizer: Any, buckets: Sequence[int]) -> None:
        self.tokenizer = tokenizer
        self.buckets = tuple(buckets)

    def __call__(self, questions: Sequence[str]) -> tuple[Any, Any]:
        encoded = self.tokenizer(list(questions), padding=False, truncation=False, return_token_type_ids=False)
        limit = self.buckets[-1]
        for index, ids in enumerate(encoded["input_ids"], start=1):
            if len(ids) > limit:
                raise InvalidInputError(f"question {index} is {len(ids)} tokens long; the limit is {limit} tokens")
        longest = max(len(ids) for ids in encoded["input_ids"])
        bucket = next(b for b in self.buckets if b >= longest)
        padded = self.tokenizer.pad(encoded, padding="max_length", max_length=bucket, return_tensors="pt")
        return padded["input_ids"], padded["attention_mask"]
