"""Minimum Bayes risk decoding (`rerank=mbr`): of the captions the search returns for an image (its
hypotheses: `search.num_return_sequences` of them, e.g. a beam's n best), keep the one the model's
own distribution agrees with most (Kumar & Byrne 2004; sampling-based MBR, Eikema & Aziz 2021).

The expected utility of a hypothesis is estimated by its mean similarity to `num_samples` captions
sampled from the model (the evidence) and, with `hypotheses_as_evidence`, to the other hypotheses.
Similarity: CIDEr-D with the training captions' document frequencies, smoothed BLEU-4 (the
consensus measures of `metrics/consensus.py`), or a weighted sum of the two (`utility={cider: 1,
bleu: 10}`: CIDEr-D's similarities run up to 10, BLEU-4's up to 1). Beam search returns the most
probable caption; MBR returns the most typical one, which is what consensus metrics reward.

A reranker of your own: register it in group "rerank" and implement `types.Reranker`.

The evidence is drawn by a seeded sampler of its own, so an evaluation is the same every run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from captionlab.errors import OptionError, UserError
from captionlab.metrics.consensus import CONSENSUS_METRICS, Consensus
from captionlab.registry import register
from captionlab.search import SampleSearch
from captionlab.search.beam import take_per_image
from captionlab.types import Decoder, EncoderOutput, Search, SearchOutput


@register("rerank", "mbr")
class MinimumBayesRisk:
    def __init__(
        self,
        num_samples: int = 50,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int = 0,
        utility: str | Mapping[str, float] = "cider",
        hypotheses_as_evidence: bool = False,
    ):
        if num_samples < 1 and not hypotheses_as_evidence:
            raise OptionError(
                f"rerank.num_samples={num_samples} with hypotheses_as_evidence=false leaves no evidence: "
                "give 1 or more samples"
            )
        self.utility = utility_weights(utility)
        self.num_samples, self.temperature, self.top_k, self.top_p = num_samples, temperature, top_k, top_p
        self.seed, self.hypotheses_as_evidence = seed, hypotheses_as_evidence
        self._consensus: dict[str, Consensus] | None = None
        self._sampler: SampleSearch | None = None

    @property
    def needs_training_captions(self) -> bool:
        """CIDEr-D weighs n-grams by the training captions' document frequencies; BLEU-4 needs none."""
        return "cider" in self.utility

    def prepare(self, training_references: Sequence[Sequence[str]]) -> None:
        """CIDEr-D's document frequencies come from the training captions, as for SCST's reward."""
        self._consensus = {metric: Consensus(metric, training_references) for metric in self.utility}

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
        decoder: Decoder,
        memory: EncoderOutput,
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
            self._evidence_sampler(search)(decoder, memory).sequences.tolist()
            if self.num_samples
            else [[] for _ in range(hypotheses.shape[0])]
        )
        order = []
        for own, sampled in zip(hypotheses.tolist(), evidence):
            captions = [decode(tokens) for tokens in own + sampled]
            keys = [None] * len(captions)
            similarity = sum(
                weight * self._consensus[metric].similarities(keys, captions)[:count]
                for metric, weight in self.utility.items()
            )
            if self.hypotheses_as_evidence:
                utility = similarity.sum(dim=1) / max(len(captions) - 1, 1)
            else:
                utility = similarity[:, count:].mean(dim=1)
            # ties keep the search's order
            order.append(sorted(range(count), key=lambda i: (-float(utility[i]), i)))
        index = torch.tensor(order, device=hypotheses.device)
        return reordered(output, index)


def utility_weights(utility: str | Mapping[str, float]) -> dict[str, float]:
    """`cider`, `bleu` or {metric: weight}: the utility as the weights of its consensus measures."""
    weights = {utility: 1.0} if isinstance(utility, str) else {str(k): float(v) for k, v in utility.items()}
    unknown = [metric for metric in weights if metric not in CONSENSUS_METRICS]
    if unknown or not weights:
        raise OptionError(
            f"rerank.utility={utility}: choose one of {', '.join(CONSENSUS_METRICS)}, or weights of them "
            "such as {cider: 1, bleu: 5}"
        )
    if any(weight < 0 for weight in weights.values()) or not any(weights.values()):
        raise OptionError(f"rerank.utility={utility}: the weights must be 0 or more, at least one above 0")
    return {metric: weight for metric, weight in weights.items() if weight}


def reordered(output: SearchOutput, index: torch.Tensor) -> SearchOutput:
    """The output with each image's returned captions in the order `index` [B, R] gives."""
    attentions, normalized = output.attentions, output.normalized_scores
    return SearchOutput(
        take_per_image(output.sequences, index),
        take_per_image(output.scores, index),
        take_per_image(attentions, index) if attentions is not None else None,
        take_per_image(normalized, index) if normalized is not None else None,
    )
