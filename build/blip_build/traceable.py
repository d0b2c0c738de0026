"""Build time: the three traceable modules of BlipForQuestionAnswering, one per component.

Each is a thin ``nn.Module`` around the original submodule that adapts inputs and outputs to plain tensors, so it
traces on its own. transformers' code is never edited or patched. At serving time nothing of this module is
imported: the stub runs the saved TorchScript through ``blip_serving.stub.runners``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from blip_serving.spec import IMAGE_ENCODER, TEXT_DECODER, TEXT_ENCODER


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

    The decoder is causal, so padding after ``position`` cannot change the logits at ``position``: the buffer may
    be longer than the answer so far (a static build's decode-length bucket), and only ``position`` goes through
    the vocabulary projection.

    Questions arrive padded to a static bucket, so the cross-attention must mask the padding. transformers 5's
    ``BlipTextAttention`` does not pass ``encoder_attention_mask`` on to ``BlipTextSelfAttention`` (the mask given
    to ``text_decoder(...)`` is dropped), so this module runs BLIP's own, unmodified submodules layer by layer
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


TRACEABLE_MODULES: dict[str, type[nn.Module]] = {
    IMAGE_ENCODER: ImageEncoder,
    TEXT_ENCODER: TextEncoder,
    TEXT_DECODER: TextDecoderStep,
}
