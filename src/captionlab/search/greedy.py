"""Greedy search, batched over images: one word per step, no backtracking."""
from __future__ import annotations

import torch

from captionlab.data.vocab import BOS_ID, EOS_ID, PAD_ID
from captionlab.models.decoders.base import CaptionDecoder
from captionlab.models.encoders import EncoderOutput
from captionlab.registry import register
from captionlab.search.base import SearchOutput, SearchStrategy


@register
class GreedySearch(SearchStrategy):
    """The most probable word at every step. Subclasses change `pick` (sampling) and
    `num_return_sequences` (several captions per image)."""

    num_return_sequences = 1

    def pick(self, logprobs: torch.Tensor) -> torch.Tensor:
        """The next token of each row from its constrained log-probabilities [R, V]."""
        return logprobs.argmax(dim=-1)

    @torch.no_grad()
    def __call__(self, decoder: CaptionDecoder, memory: EncoderOutput) -> SearchOutput:
        batch, copies = memory.pooled.shape[0], self.num_return_sequences
        device = memory.pooled.device
        state = decoder.init_state(memory)
        if copies > 1:
            state = decoder.reorder_state(state, torch.arange(batch, device=device).repeat_interleave(copies))
        rows = batch * copies
        tokens = torch.full((rows,), BOS_ID, dtype=torch.long, device=device)
        history = torch.empty(rows, 0, dtype=torch.long, device=device)
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        scores, attentions = None, []
        for _ in range(self.max_new_tokens):
            logprobs, state, attention = decoder.step(tokens, state)
            logprobs = self.constrain(logprobs, history).masked_fill(finished.unsqueeze(1), 0.0)  # finished rows: any pick
            tokens = self.pick(logprobs).masked_fill(finished, PAD_ID)
            chosen = logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1).masked_fill(finished, 0.0)
            scores = chosen if scores is None else scores + chosen
            history = torch.cat([history, tokens.unsqueeze(1)], dim=1)
            if attention is not None:
                attentions.append(attention)
            finished = finished | (tokens == EOS_ID)
            if finished.all():
                break
        attention = torch.stack(attentions, dim=1).view(batch, copies, history.shape[1], -1) if attentions else None
        return SearchOutput(history.view(batch, copies, -1), scores.view(batch, copies), attention)
