"""Inside the Triton stub: runners that feed a component's loaded artifacts and return float32 outputs.

The serving code never knows whether it holds a CPU, CUDA or Neuron TorchScript module: a runner moves inputs to
the artifact's device and dtype and, for a static-shape build, cuts and pads the batch to the traced buckets.
"""

from __future__ import annotations

from typing import Any

import torch

from blip_serving.spec import (
    ANSWER_TOKENS,
    BATCH,
    FRAMES,
    QUESTION_TOKENS,
    ComponentSpec,
    batch_chunks,
    smallest_bucket,
)

Sizes = dict[str, int]


def pad_rows(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """Pad dim 0 up to ``rows`` with copies of the last row: real values, so padding cannot produce NaNs."""
    missing = rows - tensor.shape[0]
    return tensor if missing <= 0 else torch.cat([tensor, tensor[-1:].expand(missing, *tensor.shape[1:])])


class ArtifactRunner:
    """Runs a component's artifacts: moves inputs to their device and dtype, returns float32 outputs.

    A shape-polymorphic artifact (cpu, gpu) runs any batch as it is. A static-shape build (neuron) has one
    artifact per bucket combination: the batch is cut into chunks of the largest batch bucket, the last chunk is
    padded up to the nearest bucket with copies of its last row, and only the real rows come back.
    """

    def __init__(
        self,
        artifacts: dict[tuple[tuple[str, int], ...], Any],
        spec: ComponentSpec,
        device: torch.device,
        float_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.artifacts = artifacts
        self.batched = tuple(bool(t.axes) and t.axes[0] == BATCH for t in spec.traced_inputs)
        self.device = device
        self.float_dtype = float_dtype
        self.static = () not in artifacts
        self.batch_buckets: dict[tuple[tuple[str, int], ...], tuple[int, ...]] = {}
        for key in artifacts:
            sizes = dict(key)
            rest = tuple(sorted((a, n) for a, n in sizes.items() if a != BATCH))
            if BATCH in sizes:
                self.batch_buckets[rest] = tuple(sorted({*self.batch_buckets.get(rest, ()), sizes[BATCH]}))

    @classmethod
    def from_artifacts(
        cls,
        artifacts: list[tuple[Sizes, Any]],
        spec: ComponentSpec,
        device: str | torch.device = "cpu",
        float_dtype: torch.dtype = torch.float32,
    ):
        """``artifacts``: (axis sizes, loaded module) pairs; one pair with empty sizes for a polymorphic build."""
        keyed = {tuple(sorted(sizes.items())): module for sizes, module in artifacts}
        return cls(keyed, spec, torch.device(device), float_dtype)

    def _prepare(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor.to(self.float_dtype) if tensor.is_floating_point() else tensor

    def run(self, tensors: tuple[torch.Tensor, ...], sizes: Sizes | None = None) -> torch.Tensor:
        """Run on inputs already padded to the non-batch ``sizes`` (question and answer buckets)."""
        tensors = tuple(self._prepare(t) for t in tensors)
        with torch.inference_mode():
            if not self.static:
                return self.artifacts[()](*tensors).float()
            rest = tuple(sorted((sizes or {}).items()))
            buckets = self.batch_buckets.get(rest)
            if buckets is None:
                raise RuntimeError(f"no artifact was built for sizes {dict(rest)}")
            rows = next(t.shape[0] for t, batched in zip(tensors, self.batched) if batched)
            outputs, start = [], 0
            for real, size in batch_chunks(buckets, rows):
                chunk = [t[start : start + real] if b else t for t, b in zip(tensors, self.batched)]
                if real < size:
                    chunk = [pad_rows(t, size) if b else t for t, b in zip(chunk, self.batched)]
                module = self.artifacts[tuple(sorted((*rest, (BATCH, size))))]
                outputs.append(module(*chunk)[:real])
                start += real
            return torch.cat(outputs).float()


class ImageEncoderRunner(ArtifactRunner):
    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, tokens, hidden]."""
        return self.run((pixel_values,))


class TextEncoderRunner(ArtifactRunner):
    @property
    def frame_buckets(self) -> tuple[int, ...]:
        """The frame counts a static build was traced for; empty for a shape-polymorphic one."""
        return tuple(sorted({dict(key)[FRAMES] for key in self.artifacts if FRAMES in dict(key)}))

    def encode(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frames: torch.Tensor, frame_index: torch.Tensor
    ) -> torch.Tensor:
        """Questions [N, L] (L a question bucket) of frames [F, tokens, hidden], question i about frame
        ``frame_index[i]`` -> [N, L, hidden]. A static build pads the frames to its nearest frame bucket."""
        sizes = {QUESTION_TOKENS: input_ids.shape[1]}
        if self.static:
            sizes[FRAMES] = smallest_bucket(self.frame_buckets, frames.shape[0], "frames")
            frames = pad_rows(frames, sizes[FRAMES])
        return self.run((input_ids, attention_mask, frames, frame_index), sizes)


# How long the answer buffer is at each step: "bucketed" grows through the spec's decode lengths (the static
# shapes), "exact" is just the tokens so far (shape-polymorphic artifacts only), "fixed" always the full length.
DECODE_LENGTH_POLICIES = ("bucketed", "exact", "fixed")


class TextDecoderRunner(ArtifactRunner):
    decode_lengths: tuple[int, ...] = ()
    length_policy = "bucketed"

    def configure(self, decode_lengths: tuple[int, ...], policy: str) -> TextDecoderRunner:
        if policy not in DECODE_LENGTH_POLICIES:
            raise ValueError(f"decode length policy {policy!r} is not one of {', '.join(DECODE_LENGTH_POLICIES)}")
        if policy == "exact" and self.static:
            raise ValueError("decode length policy 'exact' needs shape-polymorphic artifacts; this build is static")
        self.decode_lengths, self.length_policy = decode_lengths, policy
        return self

    def buffer_length(self, position: int) -> int:
        needed = position + 1
        if self.length_policy == "exact":
            return needed
        if self.length_policy == "fixed":
            return self.decode_lengths[-1]
        return smallest_bucket(self.decode_lengths, needed, "answer tokens")

    def next_token_logits(
        self, decoder_input_ids: torch.Tensor, position: int, question_embeds: torch.Tensor, question_mask: torch.Tensor
    ) -> torch.Tensor:
        """Logits [N, vocab] for the token after ``position``; the causal decoder ignores the buffer beyond it."""
        length = self.buffer_length(position)
        sizes = {ANSWER_TOKENS: length, QUESTION_TOKENS: question_embeds.shape[1]}
        tokens = decoder_input_ids[:, :length]
        return self.run((tokens, torch.tensor([position]), question_embeds, question_mask), sizes)
