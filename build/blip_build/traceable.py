"""Build time: the three traceable modules of BlipForQuestionAnswering, one per component.

Each is a thin ``nn.Module`` around the original submodule that adapts inputs and outputs to plain tensors, so it
traces on its own. transformers' code is never edited or patched. At serving time nothing of this module is
imported: the stub runs the saved TorchScript through ``blip_serving.stub.runners``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from blip_serving.spec import IMAGE_ENCODER, TEXT_DECODER, TEXT_ENCODER, BlipSpec


def pixel_table(spec: BlipSpec) -> torch.Tensor:
    """[channels, 256] float32: every uint8 value of every channel rescaled and normalized with the steps and
    dtypes of transformers' ``BlipImageProcessorPil`` (float64 rescale cast to float32, float32 normalize), so a
    lookup in the graph gives the processor's pixel values bit for bit."""
    values = (np.arange(256, dtype=np.float64) * spec.pixel_rescale).astype(np.float32)
    mean = np.array(spec.pixel_mean, dtype=np.float32)[:, None]
    std = np.array(spec.pixel_std, dtype=np.float32)[:, None]
    return torch.from_numpy(np.ascontiguousarray((values[None, :] - mean) / std))


class ImageEncoder(nn.Module):
    """``vision_model``: uint8 pixels [B, H, W, C] -> image embeddings (last hidden state, [CLS] included).

    Rescale and normalize run in the graph as one table lookup per pixel: the host hands over the resized uint8
    frame (a quarter of the float32 bytes, no float pass in numpy), and the device does the rest.
    """

    def __init__(self, blip: Any, spec: BlipSpec) -> None:
        super().__init__()
        self.vision_model = blip.vision_model
        self.register_buffer("table", pixel_table(spec))
        self.channels = spec.num_channels

    def pixel_values(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 [B, H, W, C] -> the processor's pixel values [B, C, H, W], contiguous for the patch convolution.

        One lookup per channel with int32 indices: measured 0.74 ms per 384 px frame on one core, against 1.8 ms
        with one int64 index over the channels-last frame and 1.2 ms for the rescale and normalize arithmetic."""
        frames = pixels.shape[:3]
        planes = [
            self.table[c].index_select(0, pixels[..., c].reshape(-1).int()).reshape(frames)
            for c in range(self.channels)
        ]
        return torch.stack(planes, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=self.pixel_values(pixels), return_dict=False)[0]


def frame_cross_attention(
    attention: Any, hidden: torch.Tensor, frames: torch.Tensor, frame_index: torch.Tensor
) -> torch.Tensor:
    """BLIP's cross-attention (``BlipTextSelfAttention``'s weights and math, unmasked as transformers runs it for
    image embeddings): questions [N, L, D] attend to their own frame's tokens; keys and values are projected once
    per frame [F, P, D] and then picked per question by ``frame_index``."""
    heads, size = attention.num_attention_heads, attention.attention_head_size
    query = attention.query(hidden).view(hidden.shape[0], hidden.shape[1], heads, size).transpose(1, 2)
    per_frame = (frames.shape[0], frames.shape[1], heads, size)
    key = attention.key(frames).view(per_frame).transpose(1, 2).index_select(0, frame_index)
    value = attention.value(frames).view(per_frame).transpose(1, 2).index_select(0, frame_index)
    scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(size)
    context = torch.matmul(scores.softmax(dim=-1), value)
    return context.permute(0, 2, 1, 3).reshape(hidden.shape[0], hidden.shape[1], heads * size)


class TextEncoder(nn.Module):
    """``text_encoder``: the questions of several frames, each cross-attending to its own frame's embeddings.

    All frames of a batch run in one call: ``image_embeds`` holds each frame once and ``frame_index`` says which
    frame each question belongs to, so the image's cross-attention keys and values are projected once per frame,
    not once per question. BLIP's own submodules run in ``BlipTextLayer``'s order (as in ``TextDecoderStep``); only
    the cross-attention's key/value selection is this module's.
    """

    def __init__(self, blip: Any, spec: BlipSpec) -> None:
        super().__init__()
        self.text_encoder = blip.text_encoder

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        image_embeds: torch.Tensor,
        frame_index: torch.Tensor,
    ) -> torch.Tensor:
        bert = self.text_encoder
        hidden = bert.embeddings(input_ids=input_ids)
        mask = (1.0 - attention_mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in bert.encoder.layer:
            attended, _ = layer.attention(hidden, attention_mask=mask)
            context = frame_cross_attention(layer.crossattention.self, attended, image_embeds, frame_index)
            attended = layer.crossattention.output(context, attended)
            hidden = layer.feed_forward_chunk(attended)
        return hidden


class TextDecoderStep(nn.Module):
    """``text_decoder``, one greedy step: the answer so far (padded to a fixed length) -> next-token logits.

    The decoder is causal, so padding after ``position`` cannot change the logits at ``position``: the buffer may
    be longer than the answer so far (a static build's decode-length bucket), and only ``position`` goes through
    the vocabulary projection.

    Questions arrive padded to a static bucket, so the cross-attention must mask the padding. transformers 5's
    ``BlipTextAttention`` does not pass ``encoder_attention_mask`` on to ``BlipTextSelfAttention`` (the mask given
    to ``text_decoder(...)`` is dropped), so this module runs BLIP's own, unmodified submodules layer by layer
    in ``BlipTextLayer``'s order and hands the cross-attention its mask directly. With an all-ones mask it is
    ``text_decoder(...)`` exactly.
    """

    def __init__(self, blip: Any, spec: BlipSpec) -> None:
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


TRACEABLE_MODULES: dict[str, type[nn.Module]] = {
    IMAGE_ENCODER: ImageEncoder,
    TEXT_ENCODER: TextEncoder,
    TEXT_DECODER: TextDecoderStep,
}
