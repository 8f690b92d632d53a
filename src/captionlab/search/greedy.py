"""Greedy search, batched over images."""
from __future__ import annotations

import torch

from captionlab.data.vocab import BOS_ID, EOS_ID, PAD_ID
from captionlab.models.decoders.base import CaptionDecoder
from captionlab.models.encoders import EncoderOutput
from captionlab.registry import register
from captionlab.search.base import SearchOutput, SearchStrategy


@register
class GreedySearch(SearchStrategy):
    @torch.no_grad()
    def __call__(self, decoder: CaptionDecoder, memory: EncoderOutput) -> SearchOutput:
        batch = memory.pooled.shape[0]
        device = memory.pooled.device
        state = decoder.init_state(memory)
        tokens = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
        finished = torch.zeros(batch, dtype=torch.bool, device=device)
        scores = torch.zeros(batch, device=device)
        words, attentions = [], []
        for step in range(self.max_new_tokens):
            logprobs, state, attention = decoder.step(tokens, state)
            logprobs = self.constrain(logprobs, step)
            best, tokens = logprobs.max(dim=-1)
            tokens = tokens.masked_fill(finished, PAD_ID)
            scores = scores + best.masked_fill(finished, 0.0)
            words.append(tokens)
            if attention is not None:
                attentions.append(attention)
            finished = finished | (tokens == EOS_ID)
            if finished.all():
                break
        sequences = torch.stack(words, dim=1)
        attention = torch.stack(attentions, dim=1).unsqueeze(1) if attentions else None
        return SearchOutput(sequences.unsqueeze(1), scores.unsqueeze(1), attention)
