"""The three traced components of BlipForQuestionAnswering, and the wrappers that run their artifacts.

Compile time: thin ``nn.Module`` wrappers around the original submodules, adapting inputs and outputs to
plain tensors so each traces on its own. transformers' code is never edited or patched.

Deploy time: ``*Wrapper.from_model(torch.jit.load(path))`` formats inputs and outputs around an artifact, so
the serving code never knows whether it holds a CPU, CUDA or Neuron TorchScript module.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from blip_serving.spec import (
    ANSWER_TOKENS,
    BATCH,
    IMAGE_ENCODER,
    QUESTION_TOKENS,
    TEXT_DECODER,
    TEXT_ENCODER,
    ComponentSpec,
    smallest_bucket,
)


class ImageEncoder(nn.Module):
    """``vision_model``: pixel values -> image embeddings (last hidden state, the [CLS] token included)."""

    def __init__(self, blip: Any) -> None:
        super().__init__()
        self.vision_model = blip.vision_model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixel_values, return_dict=False)[0]


class TextEncoder(nn.Module):
    """``text_encoder``: questions cross-attend to one frame's image embeddings.

    ``image_embeds`` has batch 1 and broadcasts against the questions inside the attention matmuls, so the
    image's cross-attention keys and values are projected once per frame rather than once per question.
    """

    def __init__(self, blip: Any) -> None:
        super().__init__()
        self.text_encoder = blip.text_encoder

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor
    ) -> torch.Tensor:
        image_mask = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        output = self.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            return_dict=False,
        )
        return output[0]


class TextDecoderStep(nn.Module):
    """``text_decoder``, one greedy step: the answer so far (padded to a fixed length) -> next-token logits.

    The decoder is causal, so padding after ``position`` cannot change the logits at ``position``; one fixed
    shape serves every step, and only ``position`` goes through the vocabulary projection.

    Questions arrive padded to a static bucket, so the cross-attention must mask the padding. transformers 5's
    ``BlipTextAttention`` does not pass ``encoder_attention_mask`` on to ``BlipTextSelfAttention`` (the mask given
    to ``text_decoder(...)`` is dropped), so this wrapper runs BLIP's own, unmodified submodules layer by layer
    in ``BlipTextLayer``'s order and hands the cross-attention its mask directly. With an all-ones mask it is
    ``text_decoder(...)`` exactly.
    """

    def __init__(self, blip: Any) -> None:
        super().__init__()
        self.text_decoder = blip.text_decoder

    def forward(
        self,
        decoder_input_ids: torch.Tensor,
        position: torch.Tensor,
        question_embeds: torch.Tensor,
        question_mask: torch.Tensor,
    ) -> torch.Tensor:
        bert = self.text_decoder.bert
        hidden = bert.embeddings(input_ids=decoder_input_ids)
        lowest = torch.finfo(hidden.dtype).min
        length = decoder_input_ids.shape[1]
        causal = torch.full((length, length), lowest, dtype=hidden.dtype, device=hidden.device).triu(1)[None, None]
        cross = (1.0 - question_mask[:, None, None, :].to(hidden.dtype)) * lowest
        for layer in bert.encoder.layer:
            attended, _ = layer.attention(hidden, attention_mask=causal)
            context, _ = layer.crossattention.self(
                attended, encoder_hidden_states=question_embeds, encoder_attention_mask=cross
            )
            attended = layer.crossattention.output(context, attended)
            hidden = layer.feed_forward_chunk(attended)
        return self.text_decoder.cls(hidden.index_select(1, position))[:, 0, :]


COMPILE_WRAPPERS: dict[str, type[nn.Module]] = {
    IMAGE_ENCODER: ImageEncoder,
    TEXT_ENCODER: TextEncoder,
    TEXT_DECODER: TextDecoderStep,
}


Sizes = dict[str, int]


class ArtifactWrapper:
    """Runs a component's artifacts: moves inputs to their device and dtype, returns float32 outputs.

    A shape-polymorphic artifact (cpu, gpu) runs any batch as it is. A static-shape build (neuron) has one
    artifact per bucket combination: the batch is cut into chunks of the largest batch bucket, the last chunk is
    padded up to the nearest bucket with copies of its last row, and only the real rows come back.
    """

    def __init__(
        self,
        artifacts: dict[tuple[tuple[str, int], ...], Any],
        component: ComponentSpec,
        device: torch.device,
        float_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.artifacts = artifacts
        self.batched = tuple(bool(t.axes) and t.axes[0] == BATCH for t in component.traced_inputs)
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
        component: ComponentSpec,
        device: str | torch.device = "cpu",
        float_dtype: torch.dtype = torch.float32,
    ):
        """``artifacts``: (axis sizes, loaded module) pairs; one pair with empty sizes for a polymorphic build."""
        keyed = {tuple(sorted(sizes.items())): module for sizes, module in artifacts}
        return cls(keyed, component, torch.device(device), float_dtype)

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
            while start < rows:
                real = min(buckets[-1], rows - start)
                size = smallest_bucket(buckets, real, "rows")
                chunk = [t[start : start + real] if b else t for t, b in zip(tensors, self.batched)]
                if real < size:
                    chunk = [
                        torch.cat([t, t[-1:].expand(size - real, *t.shape[1:])]) if b else t
                        for t, b in zip(chunk, self.batched)
                    ]
                module = self.artifacts[tuple(sorted((*rest, (BATCH, size))))]
                outputs.append(module(*chunk)[:real])
                start += real
            return torch.cat(outputs).float()


class ImageEncoderWrapper(ArtifactWrapper):
    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, tokens, hidden]."""
        return self.run((pixel_values,))


class TextEncoderWrapper(ArtifactWrapper):
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """Questions [N, L] of one frame (L a question bucket) with its embeddings -> [N, L, hidden]."""
        frame = image_embeds.reshape(1, *image_embeds.shape[-2:])
        return self.run((input_ids, attention_mask, frame), {QUESTION_TOKENS: input_ids.shape[1]})


# How long the answer buffer is at each step: "bucketed" grows through the spec's decode lengths (the static
# shapes), "exact" is just the tokens so far (shape-polymorphic artifacts only), "fixed" always the full length.
DECODE_LENGTH_POLICIES = ("bucketed", "exact", "fixed")


class TextDecoderWrapper(ArtifactWrapper):
    decode_lengths: tuple[int, ...] = ()
    length_policy = "bucketed"

    def configure(self, decode_lengths: tuple[int, ...], policy: str) -> TextDecoderWrapper:
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
