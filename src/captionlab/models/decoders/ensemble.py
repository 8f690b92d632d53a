"""Several decoders as one: the test-time ensemble behind `evaluate.py ckpt_path=[a,b,c]`.

At every step each member advances its own state on the same words, and the ensemble's
log-probabilities are the log of the members' weighted mean probability,
log sum_i w_i p_i (weights normalised to sum 1): the usual choice (self-critical.pytorch's
ensemble, fairseq's), which lets a member that is sure outvote members that are unsure. Averaging
log-probabilities instead (a product of experts) would let one member veto a word.

It implements the decoder interface, so greedy, beam and sampling search run it unchanged. Member
states live in one dict under `<key>@<member>`; image-only entries keep their `memory` prefix, so
beam search's `reorder_beams` still leaves them alone.

Members trained on different encoders or grids read the features of an `EncoderSet` (their
encoders' features side by side): `spans[i]` is the channel range member i reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from captionlab.errors import UserError
from captionlab.models.decoders.base import CaptionDecoder
from captionlab.types import EncoderOutput, State


class EnsembleDecoder(CaptionDecoder):
    def __init__(
        self,
        members: Sequence[CaptionDecoder],
        weights: Sequence[float] | None = None,
        spans: Sequence[tuple[int, int]] | None = None,
    ):
        super().__init__()
        if not members:
            raise UserError("an ensemble needs at least one member")
        if spans is not None and len(spans) != len(members):
            raise ValueError(f"{len(spans)} feature spans for {len(members)} members")
        self.spans = None if spans is None else [tuple(span) for span in spans]
        weights = [1.0] * len(members) if weights is None else [float(w) for w in weights]
        if len(weights) != len(members) or any(w <= 0 for w in weights):
            raise UserError(
                f"ensemble_weights={weights}: give one positive weight per checkpoint ({len(members)})"
            )
        self.members = nn.ModuleList(members)
        total = sum(weights)
        self.weights = [w / total for w in weights]
        self.log_weights = [math.log(w) for w in self.weights]
        self.vocab_size = members[0].vocab_size
        self.embed = members[0].embed

    def _mix(self, logprobs: list[torch.Tensor]) -> torch.Tensor:
        """log sum_i w_i p_i over members, from their log-probabilities [..., V]."""
        stacked = torch.stack(logprobs)
        log_weights = torch.tensor(self.log_weights, dtype=stacked.dtype, device=stacked.device)
        return torch.logsumexp(stacked + log_weights.view((-1,) + (1,) * (stacked.dim() - 1)), dim=0)

    def _member_memory(self, memory: EncoderOutput, index: int) -> EncoderOutput:
        return memory if self.spans is None else memory.channels(*self.spans[index])

    def forward(self, memory: EncoderOutput, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: the mixture's log-probabilities [B, T, V] (valid logits)."""
        return self._mix(
            [
                torch.log_softmax(member(self._member_memory(memory, i), tokens), dim=-1)
                for i, member in enumerate(self.members)
            ]
        )

    def init_state(self, memory: EncoderOutput) -> State:
        return {
            f"{key}@{i}": value
            for i, member in enumerate(self.members)
            for key, value in member.init_state(self._member_memory(memory, i)).items()
        }

    def _member_state(self, state: State, index: int) -> State:
        suffix = f"@{index}"
        return {key[: -len(suffix)]: value for key, value in state.items() if key.endswith(suffix)}

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        logprobs, attentions, new_state = [], [], {}
        for i, member in enumerate(self.members):
            member_logprobs, member_state, attention = member.step(tokens, self._member_state(state, i))
            logprobs.append(member_logprobs)
            new_state.update({f"{key}@{i}": value for key, value in member_state.items()})
            if attention is not None:
                attentions.append((self.weights[i], attention))
        return self._mix(logprobs), new_state, _mean_attention(attentions)


def _mean_attention(weighted: list[tuple[float, torch.Tensor]]) -> torch.Tensor | None:
    """The attending members' weighted mean attention map (their grids have the same regions)."""
    if not weighted:
        return None
    total = sum(w for w, _ in weighted)
    return sum(w * attention for w, attention in weighted) / total
