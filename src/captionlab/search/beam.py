"""Beam search, batched over images and beams: every tensor is [images, beams, ...] and nothing
loops over images in Python, so it runs at the speed of the decoder on any device.

Length penalty (Hugging Face's): a hypothesis of `length` tokens (its words plus `<eos>`) with
summed log-probability `score` ranks by `score / length ** length_penalty`. 0 ranks by the sum
(favours short captions), 1 by the mean log-probability per token, > 1 favours longer ones.

At each step an image's candidate continuations are ranked by summed log-probability: an `<eos>`
among the K = `num_beams` best finishes a hypothesis, and the K best that do not end stay open.
`num_beams=1` is greedy search, as in Hugging Face generate (a single beam with a positive length
penalty would otherwise go on past greedy's `<eos>` whenever a longer caption could rank higher).

Each image keeps a pool of its K best finished hypotheses. It is done when the pool is full and no
open beam can still beat the pool's worst (`early_stopping="never"`, the default: exact): an open
beam's sum can only fall, so its best possible normalised score is its sum over the largest
reachable length (for a positive penalty) or the smallest (otherwise). Hugging Face's other two
settings trade exactness for speed: `early_stopping=false` bounds the open beam by its sum over its
current length (a heuristic: with a positive penalty a longer caption may still have ranked
higher), `true` stops as soon as the pool is full. At `max_new_tokens`, open beams finish without
`<eos>`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from captionlab.errors import OptionError
from captionlab.registry import register
from captionlab.search.base import SearchStrategy
from captionlab.search.greedy import GreedySearch
from captionlab.types import Decoder, EncoderOutput, SearchOutput


def take_per_image(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values [B, M, ...] -> [B, K, ...]: the entries at index [B, K] of each image."""
    shape = index.shape + values.shape[2:]
    return values.gather(1, index.view(*index.shape, *[1] * (values.dim() - 2)).expand(shape))


@register("search", "beam")
class BeamSearch(SearchStrategy):
    # the decoder stops stepping images whose search is done once they are this share of the
    # images it steps (their rows leave its state; None: never), as greedy drops ended captions
    drop_finished_share: float | None = 0.5

    def __init__(
        self,
        num_beams: int = 3,
        length_penalty: float = 1.0,
        num_return_sequences: int = 1,
        num_beam_groups: int = 1,
        diversity_penalty: float = 0.0,
        early_stopping: bool | str = "never",
        **rules,
    ):
        super().__init__(**rules)
        if num_beams < 1 or not 1 <= num_return_sequences <= num_beams:
            raise OptionError(
                f"need search.num_beams >= 1 ({num_beams}) and 1 <= search.num_return_sequences <= "
                f"num_beams ({num_return_sequences})"
            )
        if num_beam_groups < 1 or num_beams % num_beam_groups or diversity_penalty < 0:
            raise OptionError(
                f"search.num_beam_groups={num_beam_groups} must divide search.num_beams={num_beams}, "
                f"and search.diversity_penalty ({diversity_penalty}) must be >= 0"
            )
        self.num_beams, self.length_penalty, self.num_return_sequences = (
            num_beams,
            length_penalty,
            num_return_sequences,
        )
        if early_stopping not in (True, False, "never"):
            raise OptionError(f"search.early_stopping={early_stopping!r}: give true, false or never")
        self.num_beam_groups, self.diversity_penalty = num_beam_groups, diversity_penalty
        self.early_stopping = early_stopping
        # Hugging Face: one beam is greedy
        self._greedy = GreedySearch(**rules) if num_beams == 1 else None

    def _normalize(self, scores: torch.Tensor, length: int | torch.Tensor) -> torch.Tensor:
        if isinstance(length, torch.Tensor):
            return scores / length.to(scores.dtype) ** self.length_penalty
        return scores / float(length) ** self.length_penalty

    @torch.no_grad()
    def __call__(self, decoder: Decoder, memory: EncoderOutput) -> SearchOutput:
        special = self.special
        if self._greedy is not None:
            output = self._greedy(decoder, memory)
            lengths = (output.sequences != special.pad).sum(-1).clamp(min=1)
            output.normalized_scores = self._normalize(output.scores, lengths)
            return output
        # each group is a beam search of its own (a "row" below: image x group), in lockstep
        groups = self.num_beam_groups
        images_count, beams, limit = memory.pooled.shape[0], self.num_beams // groups, self.max_new_tokens
        batch = images_count * groups
        device = memory.pooled.device
        state = decoder.reorder_state(
            decoder.init_state(memory),
            torch.arange(images_count, device=device).repeat_interleave(groups * beams),
        )
        # every tensor below holds the rows still stepped, `stepped` (all at first); the pools of
        # images whose search is done move to `finished` when their rows leave the decoder's state
        stepped = torch.arange(batch, device=device)
        tokens = torch.full((batch * beams,), special.bos, dtype=torch.long, device=device)
        history = torch.empty(batch, beams, 0, dtype=torch.long, device=device)
        attention_history = None
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        pool = None  # the finished hypotheses: normalized, scores [B, K], sequences [B, K, limit], attentions
        finished = None  # the pools of the rows no longer stepped, at their places among all rows
        for step in range(limit):
            rows_count = stepped.numel()
            logprobs, state, attention = decoder.step(tokens, state)
            logprobs = self.constrain(logprobs, history.view(rows_count * beams, step))
            vocab = logprobs.shape[-1]
            if pool is None:
                # only the first beam is open at the start, so the beams do not all copy it
                beam_scores = torch.zeros(batch, beams, dtype=logprobs.dtype, device=device)
                beam_scores[:, 1:] = float("-inf")
                pool = self._empty_pool(batch, logprobs.dtype, device, attention)
            candidates = (beam_scores.view(-1, 1) + logprobs).view(rows_count, beams * vocab)
            top_scores, top_index = self._top_candidates(candidates, vocab)
            source, token = top_index // vocab, top_index % vocab
            sequences = torch.cat([take_per_image(history, source), token.unsqueeze(-1)], dim=-1)
            attentions = None
            if attention is not None:
                step_attention = attention.view(rows_count, beams, 1, -1)
                attentions = (
                    torch.cat(
                        [take_per_image(attention_history, source), take_per_image(step_attention, source)],
                        dim=2,
                    )
                    if attention_history is not None
                    else take_per_image(step_attention, source)
                )

            # as in Hugging Face: only an <eos> among the K best candidates finishes a hypothesis
            ranked_in = torch.arange(top_index.shape[1], device=device) < beams
            ends = ((token == special.eos) & ranked_in) | (step == limit - 1)
            entering = self._normalize(top_scores, step + 1).masked_fill(
                ~ends | done.unsqueeze(1), float("-inf")
            )
            pool = self._merge(pool, entering, top_scores, sequences, attentions)

            open_scores = top_scores.masked_fill(token == special.eos, float("-inf"))
            beam_scores, keep = open_scores.topk(beams, dim=1)
            history = take_per_image(sequences, keep)
            attention_history = take_per_image(attentions, keep) if attentions is not None else None
            tokens = take_per_image(token, keep).view(-1)
            rows = take_per_image(source, keep) + torch.arange(rows_count, device=device).unsqueeze(1) * beams
            state = decoder.reorder_beams(state, rows.view(-1))

            done = done | self._cannot_improve(pool["normalized"], beam_scores, step)
            if done.all():
                break
            kept = self._rows_kept(done, groups)
            if kept is not None:
                leaving = torch.ones(rows_count, dtype=torch.bool, device=device).index_fill_(0, kept, False)
                if finished is None:  # every row is written: when it leaves or at the end
                    finished = {
                        key: value.new_empty((batch, *value.shape[1:])) for key, value in pool.items()
                    }
                self._store(finished, stepped[leaving], {key: value[leaving] for key, value in pool.items()})
                stepped, pool = stepped[kept], {key: value[kept] for key, value in pool.items()}
                beam_scores, history, done = beam_scores[kept], history[kept], done[kept]
                attention_history = attention_history[kept] if attention_history is not None else None
                tokens = tokens.view(rows_count, beams)[kept].view(-1)
                state = decoder.reorder_state(
                    state, (kept.unsqueeze(1) * beams + torch.arange(beams, device=device)).view(-1)
                )
        if finished is not None:
            self._store(finished, stepped, pool)
            pool = finished
        if groups > 1:  # every group's finished hypotheses compete for the image's returned ones
            pool = {
                key: value.view(images_count, groups * beams, *value.shape[2:]) for key, value in pool.items()
            }
            best = pool["normalized"].topk(groups * beams, dim=1).indices
            pool = {key: take_per_image(value, best) for key, value in pool.items()}
        return self._output(pool)

    def _rows_kept(self, done: torch.Tensor, groups: int) -> torch.Tensor | None:
        """The rows (image x group) to go on stepping, once the done images are
        `drop_finished_share` of the images stepped (None: keep every row). An image leaves when
        all its groups are done: their choices interact."""
        share, images = self.drop_finished_share, done.numel() // groups
        still = (~done.view(images, groups).all(dim=1)).nonzero().squeeze(1)
        if share is None or still.numel() == images or still.numel() > (1 - share) * images:
            return None
        return (still.unsqueeze(1) * groups + torch.arange(groups, device=done.device)).view(-1)

    @staticmethod
    def _store(finished: dict, rows: torch.Tensor, entries: dict) -> None:
        """Write pool entries into `finished` at `rows` (their positions among all rows)."""
        for key, value in finished.items():
            value.index_copy_(0, rows, entries[key])

    def _top_candidates(self, candidates: torch.Tensor, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's 2K best candidates (2K hold at least K that do not end: each beam has one
        `<eos>`), [rows, 2K] scores and indices into beams x vocab.

        With groups (diverse beam search, Vijayakumar et al. 2018, Hugging Face's
        `num_beam_groups`/`diversity_penalty`): the groups of an image choose one after another,
        each scoring a word `diversity_penalty` lower for every beam of an earlier group that
        continued with it at this step (Hamming diversity); the penalised scores are what the beams
        accumulate, as in Hugging Face."""
        beams = candidates.shape[1] // vocab
        width = min(2 * beams, beams * vocab)
        groups = self.num_beam_groups
        if groups == 1:
            return candidates.topk(width, dim=1)
        per_image = candidates.view(-1, groups, beams, vocab)
        counts = candidates.new_zeros(per_image.shape[0], vocab)  # words chosen at this step so far
        scores, indices = [], []
        for group in range(groups):
            penalised = per_image[:, group] - self.diversity_penalty * counts.unsqueeze(1)
            top_scores, top_index = penalised.reshape(per_image.shape[0], beams * vocab).topk(width, dim=1)
            token = top_index % vocab
            # the words this group continues with: its K best candidates that do not end
            open_scores = top_scores.masked_fill(token == self.special.eos, float("-inf"))
            kept = take_per_image(token.unsqueeze(-1), open_scores.topk(beams, dim=1).indices).squeeze(-1)
            counts.scatter_add_(1, kept, torch.ones_like(kept, dtype=counts.dtype))
            scores.append(top_scores)
            indices.append(top_index)
        return torch.stack(scores, dim=1).flatten(0, 1), torch.stack(indices, dim=1).flatten(0, 1)

    def _cannot_improve(
        self, pool_normalized: torch.Tensor, beam_scores: torch.Tensor, step: int
    ) -> torch.Tensor:
        """[B] True where the pool is full and its worst beats what the best open beam can still reach
        (its length now: `early_stopping=false`; any pool that is full: `true`)."""
        worst_kept = pool_normalized[:, -1]
        full = worst_kept > float("-inf")
        if self.early_stopping is True:
            return full
        if self.early_stopping is False:
            reachable = step + 1
        else:
            reachable = self.max_new_tokens if self.length_penalty > 0 else step + 2
        best_open = self._normalize(beam_scores[:, 0], reachable)
        return full & (best_open <= worst_kept)

    def _empty_pool(self, batch: int, dtype: torch.dtype, device: torch.device, attention) -> dict:
        beams, limit = self.num_beams // self.num_beam_groups, self.max_new_tokens
        pool = {
            "normalized": torch.full((batch, beams), float("-inf"), dtype=dtype, device=device),
            "scores": torch.full((batch, beams), float("-inf"), dtype=dtype, device=device),
            "sequences": torch.full((batch, beams, limit), self.special.pad, dtype=torch.long, device=device),
        }
        if attention is not None:
            pool["attentions"] = attention.new_zeros(batch, beams, limit, attention.shape[-1])
        return pool

    def _merge(
        self,
        pool: dict,
        normalized: torch.Tensor,
        scores: torch.Tensor,
        sequences: torch.Tensor,
        attentions: torch.Tensor | None,
    ) -> dict:
        """Keep the `num_beams` best of the pool and the entering hypotheses (-inf: not entering)."""
        pad = self.max_new_tokens - sequences.shape[-1]
        everything = {
            "normalized": torch.cat([pool["normalized"], normalized], dim=1),
            "scores": torch.cat([pool["scores"], scores], dim=1),
            "sequences": torch.cat(
                [pool["sequences"], F.pad(sequences, (0, pad), value=self.special.pad)], dim=1
            ),
        }
        if attentions is not None:
            everything["attentions"] = torch.cat(
                [pool["attentions"], F.pad(attentions, (0, 0, 0, pad))], dim=1
            )
        best = everything["normalized"].topk(self.num_beams // self.num_beam_groups, dim=1).indices
        return {key: take_per_image(value, best) for key, value in everything.items()}

    def _output(self, pool: dict) -> SearchOutput:
        returned = self.num_return_sequences
        sequences = pool["sequences"][:, :returned]
        length = max(int((sequences != self.special.pad).sum(dim=-1).max()), 1)
        attentions = pool["attentions"][:, :returned, :length] if "attentions" in pool else None
        return SearchOutput(
            sequences[..., :length],
            pool["scores"][:, :returned],
            attentions,
            pool["normalized"][:, :returned],
        )
