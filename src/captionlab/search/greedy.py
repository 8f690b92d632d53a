"""Greedy search, batched over images: one word per step, no backtracking."""

from __future__ import annotations

import torch

from captionlab.registry import register
from captionlab.search.base import SearchStrategy
from captionlab.types import Decoder, EncoderOutput, SearchOutput


@register("search", "greedy")
class GreedySearch(SearchStrategy):
    """The most probable word at every step. Subclasses change `pick` (sampling) and
    `num_return_sequences` (several captions per image)."""

    num_return_sequences = 1
    # the decoder stops stepping captions that ended once they are this share of the rows it steps
    # (their state is dropped; None: never): many samples per image have a long tail of lengths
    drop_finished_share: float | None = 0.5

    def pick(self, logprobs: torch.Tensor, history: torch.Tensor | None = None) -> torch.Tensor:
        """The next token of each row from its constrained log-probabilities [R, V]."""
        return logprobs.argmax(dim=-1)

    @torch.no_grad()
    def __call__(self, decoder: Decoder, memory: EncoderOutput) -> SearchOutput:
        batch, copies, special = memory.pooled.shape[0], self.num_return_sequences, self.special
        device = memory.pooled.device
        state = decoder.init_state(memory)
        if copies > 1:
            state = decoder.reorder_state(state, torch.arange(batch, device=device).repeat_interleave(copies))
        rows = batch * copies
        tokens = torch.full((rows,), special.bos, dtype=torch.long, device=device)
        history = torch.empty(rows, 0, dtype=torch.long, device=device)
        finished = torch.zeros(rows, dtype=torch.bool, device=device)
        stepped = torch.arange(rows, device=device)  # the rows the decoder steps (the state's rows)
        scores, attentions = None, []
        for _ in range(self.max_new_tokens):
            stepped_logprobs, state, stepped_attention = decoder.step(tokens[stepped], state)
            logprobs = self._scatter(stepped_logprobs, stepped, rows)
            # finished rows: any pick (their log-probabilities are 0); the pick sees every row, so
            # a seeded sampler draws the same words however many rows the decoder stepped
            logprobs = self.constrain(logprobs, history).masked_fill(finished.unsqueeze(1), 0.0)
            tokens = self.pick(logprobs, history).masked_fill(finished, special.pad)
            chosen = logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1).masked_fill(finished, 0.0)
            scores = chosen if scores is None else scores + chosen
            history = torch.cat([history, tokens.unsqueeze(1)], dim=1)
            if stepped_attention is not None:
                attentions.append(self._scatter(stepped_attention, stepped, rows))
            finished = finished | (tokens == special.eos)
            if finished.all():
                break
            if self.drop_finished_share is not None:
                still = (~finished[stepped]).nonzero().squeeze(1)
                if still.numel() <= (1 - self.drop_finished_share) * stepped.numel():
                    stepped, state = stepped[still], decoder.reorder_state(state, still)
        attention = (
            torch.stack(attentions, dim=1).view(batch, copies, history.shape[1], -1) if attentions else None
        )
        return SearchOutput(history.view(batch, copies, -1), scores.view(batch, copies), attention)

    @staticmethod
    def _scatter(values: torch.Tensor, stepped: torch.Tensor, rows: int) -> torch.Tensor:
        """[len(stepped), ...] values as [rows, ...], zeros in the rows not stepped."""
        if stepped.numel() == rows:
            return values
        return values.new_zeros((rows, *values.shape[1:])).index_copy_(0, stepped, values)
