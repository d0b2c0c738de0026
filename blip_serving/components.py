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

from blip_serving.spec import IMAGE_ENCODER, TEXT_DECODER, TEXT_ENCODER, ComponentSpec


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


class ArtifactWrapper:
    """Runs a loaded artifact: moves inputs to its device and dtype, and returns float32 outputs.

    Where the artifact has a static batch (Neuron), the batch is cut into chunks of that size and the last
    chunk is padded with copies of its last row; only the real rows come back.
    """

    def __init__(
        self,
        module: Any,
        batched: tuple[bool, ...],
        device: torch.device,
        float_dtype: torch.dtype = torch.float32,
        static_batch: int | None = None,
    ) -> None:
        self.module = module
        self.batched = batched
        self.device = device
        self.float_dtype = float_dtype
        self.static_batch = static_batch

    @classmethod
    def from_model(
        cls,
        module: Any,
        component: ComponentSpec,
        device: str | torch.device = "cpu",
        float_dtype: torch.dtype = torch.float32,
        static_batch: int | None = None,
    ):
        batched = tuple(t.dims[0] == -1 for t in component.traced_inputs)
        return cls(module, batched, torch.device(device), float_dtype, static_batch)

    def _prepare(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device, non_blocking=True)
        return tensor.to(self.float_dtype) if tensor.is_floating_point() else tensor

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor:
        tensors = tuple(self._prepare(t) for t in tensors)
        with torch.inference_mode():
            if self.static_batch is None:
                return self.module(*tensors).float()
            rows = next(t.shape[0] for t, batched in zip(tensors, self.batched) if batched)
            size, outputs = self.static_batch, []
            for start in range(0, rows, size):
                chunk = [t[start : start + size] if b else t for t, b in zip(tensors, self.batched)]
                real = min(size, rows - start)
                if real < size:
                    chunk = [
                        torch.cat([t, t[-1:].expand(size - real, *t.shape[1:])]) if b else t
                        for t, b in zip(chunk, self.batched)
                    ]
                outputs.append(self.module(*chunk)[:real])
            return torch.cat(outputs).float()


class ImageEncoderWrapper(ArtifactWrapper):
    def encode(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, tokens, hidden]."""
        return self(pixel_values)


class TextEncoderWrapper(ArtifactWrapper):
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
        """Questions [N, L] of one frame with its embeddings [tokens, hidden] -> question embeddings [N, L, hidden]."""
        return self(input_ids, attention_mask, image_embeds.reshape(1, *image_embeds.shape[-2:]))


class TextDecoderWrapper(ArtifactWrapper):
    def next_token_logits(
        self, decoder_input_ids: torch.Tensor, position: int, question_embeds: torch.Tensor, question_mask: torch.Tensor
    ) -> torch.Tensor:
        """Logits [N, vocab] for the token after ``position`` of each answer so far."""
        return self(decoder_input_ids, torch.tensor([position]), question_embeds, question_mask)
