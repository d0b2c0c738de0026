"""Questions at the boundary: decode, validate, and tokenize into the smallest length bucket that holds them.

The stubs tokenize and detokenize with the checkpoint's own ``tokenizer.json`` through the ``tokenizers`` library
(what transformers' fast tokenizer runs underneath), so no stub imports transformers; tests hold the ids and the
decoded answers equal to transformers'.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from blip_serving.errors import InvalidInputError
from blip_serving.spec import smallest_bucket


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


class CheckpointTokenizer:
    """The checkpoint's tokenizer.json: [CLS] question [SEP] ids, and answers decoded without special tokens."""

    def __init__(self, processor_dir: Path) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(processor_dir / "tokenizer.json"))
        config = json.loads((processor_dir / "tokenizer_config.json").read_text())
        pad = config.get("pad_token", "[PAD]")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        pad_id = self.tokenizer.token_to_id(pad)
        if pad_id is None:
            raise ValueError(f"pad token {pad!r} is not in {processor_dir / 'tokenizer.json'}")
        self.pad_token_id = pad_id
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts), add_special_tokens=True)]

    def decode(self, ids: Any) -> list[str]:
        rows = ids.tolist() if hasattr(ids, "tolist") else [list(row) for row in ids]
        return self.tokenizer.decode_batch(rows, skip_special_tokens=True)


# Distinct question lists kept tokenized: behaviour questions repeat on every frame of every camera.
QUESTION_CACHE_SIZE = 1024


class QuestionTokenizer:
    """A frame's questions padded together to the smallest bucket holding the longest one (short behavior
    questions do not pay for long ones), with the real attention mask.

    Results are cached by question list (least recently used first out); the cached tensors are shared, so callers
    must not write into them (the models only read and concatenate them).
    """

    def __init__(self, tokenizer: CheckpointTokenizer, buckets: Sequence[int], cache_size: int = QUESTION_CACHE_SIZE):
        self.tokenizer = tokenizer
        self.buckets = tuple(buckets)
        self._cached = functools.lru_cache(maxsize=cache_size)(self._tokenize)

    def __call__(self, questions: Sequence[str]) -> tuple[Any, Any]:
        return self._cached(tuple(questions))

    def _tokenize(self, questions: tuple[str, ...]) -> tuple[Any, Any]:
        import torch

        encoded = self.tokenizer.encode(questions)
        limit = self.buckets[-1]
        for index, ids in enumerate(encoded, start=1):
            if len(ids) > limit:
                raise InvalidInputError(f"question {index} is {len(ids)} tokens long; the limit is {limit} tokens")
        bucket = smallest_bucket(self.buckets, max(len(ids) for ids in encoded), "question tokens")
        input_ids = torch.full((len(encoded), bucket), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), bucket), dtype=torch.long)
        for row, ids in enumerate(encoded):
            input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            attention_mask[row, : len(ids)] = 1
        return input_ids, attention_mask
