"""Minimum Bayes risk decoding (`rerank=mbr`): of the captions the search returns for an image (its
hypotheses: `search.num_return_sequences` of them, e.g. a beam's n best), keep the one the model's
own distribution agrees with most (Kumar & Byrne 2004; sampling-based MBR, Eikema & Aziz 2021).

The expected utility of a hypothesis is estimated by its mean similarity to `num_samples` captions
sampled from the model (the evidence) and, with `hypotheses_as_evidence`, to the other hypotheses.
Similarity: CIDEr-D with the training captions' document frequencies, or smoothed BLEU-4, the
consensus measures of `systems/consensus.py`. Beam search returns the most probable caption; MBR
returns the most typical one, which is what consensus metrics such as CIDEr reward.

The evidence is drawn by a seeded sampler of its own, so an evaluation is the same every run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from captionlab.errors import OptionError, UserError
from captionlab.registry import register
from captionlab.search import SampleSearch
from captionlab.search.beam import take_per_image
from captionlab.systems.consensus import CONSENSUS_METRICS, Consensus
from captionlab.types import Batch, Search, SearchOutput


@register("rerank", "mbr")
class MinimumBayesRisk:
    def __init__(
        self,
        num_samples: int = 50,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        utility: str = "cider",
        hypotheses_as_evidence: bool = False,
    ):
        if num_samples < 1 and not hypotheses_as_evidence:
            raise OptionError(
                f"rerank.num_samples={num_samples} with hypotheses_as_evidence=false leaves no evidence: "
                "give 1 or more samples"
            )
        if utility not in CONSENSUS_METRICS:
            raise OptionError(f"rerank.utility={utility}: choose one of {', '.join(CONSENSUS_METRICS)}")
        self.num_samples, self.temperature, self.top_k, self.top_p = num_samples, temperature, top_k, top_p
        self.seed, self.utility, self.hypotheses_as_evidence = seed, utility, hypotheses_as_evidence
        self._consensus: Consensus | None = None
        self._sampler: SampleSearch | None = None

    def prepare(self, training_references: Sequence[Sequence[str]]) -> None:
        """CIDEr-D's document frequencies come from the training captions, as for SCST's reward."""
        self._consensus = Consensus(self.utility, training_references)

    def check(self, search: Search) -> None:
        """MBR chooses among the search's captions: it needs several."""
        if search.num_return_sequences < 2:
            raise OptionError(
                "rerank=mbr chooses among the captions the search returns: set "
                "search.num_return_sequences to 2 or more (with search=beam, search.num_beams at least as many)"
            )

    def _evidence_sampler(self, search: Search) -> SampleSearch:
        """Samples with the search's length limit and rules (built once: one seeded stream per run)."""
        if self._sampler is None:
            rules = {
                key: getattr(search, key)
                for key in ("max_new_tokens", "suppress_unk", "no_repeat_ngram_size", "block_repeated_words")
                if hasattr(search, key)
            }
            self._sampler = SampleSearch(
                temperature=self.temperature,
                top_k=self.top_k,
                top_p=self.top_p,
                num_return_sequences=self.num_samples,
                seed=self.seed,
                special=search.special,
                **rules,
            )
        return self._sampler

    def __call__(
        self,
        captioner: torch.nn.Module,
        batch: Batch,
        search: Search,
        output: SearchOutput,
        decode: Callable[[Sequence[int]], str],
    ) -> SearchOutput:
        """`output` with each image's hypotheses reordered by expected utility, the chosen one first."""
        if self._consensus is None:
            raise UserError("rerank=mbr needs the training captions (prepare) before it can score captions")
        hypotheses = output.sequences
        count = hypotheses.shape[1]
        evidence = (
            captioner.generate(batch, self._evidence_sampler(search)).sequences.tolist()
            if self.num_samples
            else [[] for _ in range(hypotheses.shape[0])]
        )
        order = []
        for own, sampled in zip(hypotheses.tolist(), evidence):
            captions = [decode(tokens) for tokens in own + sampled]
            similarity = self._consensus.similarities([None] * len(captions), captions)[:count]
            if self.hypotheses_as_evidence:
                utility = similarity.sum(dim=1) / max(len(captions) - 1, 1)
            else:
                utility = similarity[:, count:].mean(dim=1)
            # ties keep the search's order
            order.append(sorted(range(count), key=lambda i: (-float(utility[i]), i)))
        index = torch.tensor(order, device=hypotheses.device)
        return reordered(output, index)


def reordered(output: SearchOutput, index: torch.Tensor) -> SearchOutput:
    """The output with each image's returned captions in the order `index` [B, R] gives."""
    attentions, normalized = output.attentions, output.normalized_scores
    return SearchOutput(
        take_per_image(output.sequences, index),
        take_per_image(output.scores, index),
        take_per_image(attentions, index) if attentions is not None else None,
        take_per_image(normalized, index) if normalized is not None else None,
    )
