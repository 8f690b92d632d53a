"""The decoder interface every search strategy relies on.

- `forward(memory, tokens)`: teacher forcing; `tokens` [B, T] starts with `<bos>`; returns logits
  [B, T, V] predicting the next token at every position. `teacher_forcing(memory, tokens, rows)`
  returns them with the decoder's extra training loss term (or None), which the loss adds; there
  `memory` may hold one row per image and `rows` [B] each caption's image (training sees several
  captions per image), so that decoders project every image once, not once per caption.
- `init_state(memory)` -> state; `step(tokens_t, state)` -> (logprobs [B, V], state, attention
  [B, N] or None); `reorder_state(state, index)` selects/reorders batch rows (beam search).

A state is a dict of batch-first tensors, so one `reorder_state` serves every decoder. Entries whose
name starts with `memory` depend only on the image (projected grid, cross-attention keys): beam
search copies them once per beam and then leaves them alone (`reorder_beams`), instead of copying
megabytes per step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from captionlab.errors import UserError
from captionlab.types import EncoderOutput, State


def region_mean(grid: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """The mean of each image's real regions: grid [B, N, D], mask [B, N] or None -> [B, D]."""
    if mask is None:
        return grid.mean(dim=1)
    weights = mask.to(grid.dtype).unsqueeze(-1)
    return (grid * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def expand_memory(memory: EncoderOutput, rows: torch.Tensor | None) -> EncoderOutput:
    """One memory row per caption: `memory` [I, ...] indexed by each caption's image `rows` [B]."""
    return memory if rows is None else memory.index_select(rows)


def caption_mask(mask: torch.Tensor | None, rows: torch.Tensor | None) -> torch.Tensor | None:
    """The region mask per caption (only the mask: the grid itself is not copied)."""
    return mask if mask is None or rows is None else mask.index_select(0, rows)


@dataclass(frozen=True)
class LengthSchedule:
    """Teacher forcing that skips the padding: a batch's captions are about half padding on
    Flickr8k (mean 13 tokens, longest 27 per batch of 160), so a recurrent decoder runs them
    longest first and at step t advances only the first `active[t]` rows, slicing its state
    instead of computing and discarding the padded ones."""

    order: torch.Tensor  # [B] caption indices, longest first
    lengths: torch.Tensor  # [B] the sorted captions' lengths (steps up to the last real token)
    active: list[int]  # how many captions are still going at each step (non-increasing)
    rows: torch.Tensor  # [sum(active)] the caption of each packed step output
    times: torch.Tensor  # [sum(active)] the step of each packed step output
    shape: tuple[int, int]  # (B, T) of the tokens

    @classmethod
    def of(cls, tokens: torch.Tensor, pad_id: int) -> LengthSchedule:
        """A caption runs to its last non-padding token (a padding token inside it is fed as is)."""
        real = (tokens != pad_id).long()
        size, steps = tokens.shape
        lengths = torch.where(real.any(1), steps - real.flip(1).argmax(1), 0)
        sorted_lengths, order = torch.sort(lengths, descending=True, stable=True)
        going = sorted_lengths.unsqueeze(0) > torch.arange(steps, device=tokens.device).unsqueeze(1)
        active = [n for n in going.sum(1).tolist() if n > 0]
        rows = torch.cat([order[:n] for n in active]) if active else order[:0]
        times = torch.repeat_interleave(
            torch.arange(len(active), device=tokens.device), torch.tensor(active, device=tokens.device)
        )
        return cls(order, sorted_lengths, active, rows, times, (size, steps))

    def caption_rows(self, rows: torch.Tensor | None) -> torch.Tensor:
        """Each sorted caption's row of the memory (`rows`: each caption's image, or None)."""
        return self.order if rows is None else rows.index_select(0, self.order)

    def unpack(self, packed: torch.Tensor) -> torch.Tensor:
        """Step outputs concatenated in schedule order [sum(active), ...] -> [B, T, ...] in the
        captions' own order, zero after each caption's end (where the loss ignores them)."""
        out = packed.new_zeros(self.shape + tuple(packed.shape[1:]))
        return out.index_put((self.rows, self.times), packed)


def narrow_state(state: State, count: int) -> State:
    """The first `count` rows of every state entry (views, no copies)."""
    return {key: value[:count] for key, value in state.items()}


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Attention weights over regions [B, N]; padded regions (mask False) get exactly zero."""
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def select_rows(state: State, index: torch.Tensor, selects: Callable[[str], bool]) -> State:
    """`index`'s rows of the entries `selects` names (the others as they are); a tensor held by
    several entries is selected once, and the new entries share it too."""
    selected: dict[int, torch.Tensor] = {}  # id of a tensor of `state` -> its rows `index`
    reordered = {}
    for key, value in state.items():
        if not selects(key):
            reordered[key] = value
            continue
        if id(value) not in selected:
            selected[id(value)] = value.index_select(0, index)
        reordered[key] = selected[id(value)]
    return reordered


def memory_state(memory: EncoderOutput) -> State:
    """The region mask as a decoder state entry (`memory_mask`), when the grid is padded."""
    return {} if memory.mask is None else {"memory_mask": memory.mask}


class CaptionDecoder(nn.Module):
    vocab_size: int
    pad_id: int
    embed: nn.Embedding

    def load_word_vectors(self, path: str | Path, words: Sequence[str]) -> int:
        """Initialise word embeddings from a GloVe or word2vec text file; returns how many
        vocabulary words it covered (the others keep their random initialisation)."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"decoder.embeddings_file={path}: no such file; give a GloVe/word2vec text file")
        index = {w: i for i, w in enumerate(words)}
        dim, found = self.embed.embedding_dim, 0
        with path.open(encoding="utf-8", errors="replace") as handle, torch.no_grad():
            for number, line in enumerate(handle, 1):
                parts = line.rstrip().split(" ")
                if number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header: "<count> <dim>"
                if len(parts) - 1 != dim:
                    raise UserError(
                        f"{path}:{number}: vectors have {len(parts) - 1} dimensions but the decoder's "
                        f"embeddings have {dim}; set decoder.embed_dim (or dim) to {len(parts) - 1}"
                    )
                if parts[0] in index:
                    self.embed.weight[index[parts[0]]] = torch.tensor([float(x) for x in parts[1:]])
                    found += 1
        return found

    def forward(self, memory: EncoderOutput, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def init_state(self, memory: EncoderOutput) -> State:
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        raise NotImplementedError

    def reorder_state(self, state: State, index: torch.Tensor) -> State:
        """The state's rows `index`. A tensor several entries hold (an ensemble's soft-attention
        members read the same image grid) is selected once and stays shared: copying it per member
        multiplied the memory of sampling many captions per image."""
        return select_rows(state, index, lambda key: True)

    def reorder_beams(self, state: State, index: torch.Tensor) -> State:
        """`reorder_state` for an index that moves rows only among the beams of the same image,
        whose `memory*` entries are equal, so those stay as they are."""
        return select_rows(state, index, lambda key: not key.startswith("memory"))

    def teacher_forcing(
        self, memory: EncoderOutput, tokens: torch.Tensor, rows: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`forward`'s logits and the decoder's extra training loss term computed in the same pass
        (e.g. attention's doubly stochastic penalty, in training mode); None when it has none.
        `rows`: each caption's row of `memory` (None: one row per caption)."""
        return self(expand_memory(memory, rows), tokens), None

    def _recur(self, words: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """A recurrent decoder's step before its vocabulary layer: (output [B, H], state, attention)."""
        raise NotImplementedError

    def unroll_real_steps(
        self,
        memory: EncoderOutput,
        tokens: torch.Tensor,
        rows: torch.Tensor | None,
        embed: Callable[[torch.Tensor], torch.Tensor],
    ) -> tuple[LengthSchedule, torch.Tensor, list[torch.Tensor | None]]:
        """Teacher forcing through `_recur` over the real steps only, the words embedded by
        `embed` (token ids [B, T] -> [B, T, E]) after the captions are sorted, so no embedded copy
        is moved; returns the schedule, the step outputs in its packed order [sum(active), H] and
        each step's attention (for `schedule.unpack`)."""
        schedule = LengthSchedule.of(tokens, self.pad_id)
        state = self.caption_state(memory, schedule.caption_rows(rows))
        words = embed(tokens.index_select(0, schedule.order))
        outputs, alphas = [], []
        for t, count in enumerate(schedule.active):
            output, state, alpha = self._recur(words[:count, t], narrow_state(state, count))
            outputs.append(output)
            alphas.append(alpha)
        return schedule, torch.cat(outputs), alphas

    def caption_state(self, memory: EncoderOutput, rows: torch.Tensor | None) -> State:
        """`init_state` computed once per image of `memory`, then copied to one row per caption."""
        state = self.init_state(memory)
        return state if rows is None else self.reorder_state(state, rows)
