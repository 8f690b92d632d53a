"""Self-critical sequence training (Rennie et al. 2017), the second stage after cross-entropy.

For each image: draw `num_samples` captions from the model (`sample_method: sample`), or take the
`num_samples` beams of beam search (`beam`, as M2 and X-modaler do), reward each with CIDEr-D
against the image's references (document frequencies from the training references, computed
once), optionally mixed with BLEU-4, and push up the log-probability of captions that beat the
baseline: the mean reward of the image's other samples (`baseline: mean`, the default) or the
reward of the greedy caption (`baseline: greedy`).

`include_eos` (default, as in the paper and self-critical.pytorch): the reward sees the end token as
a word, in the candidate when the model ended it and in every reference, so that a caption cut at
`max_new_tokens` (one that never stopped) loses the n-grams that end a sentence.
`kl_weight` adds KL(policy || the starting model) at every sampled position; `entropy_weight`
rewards the policy's entropy there: both keep the policy near the cross-entropy model.
`mbr_weight` adds the caption's agreement with the starting model to its reward: its mean CIDEr-D
to `mbr_samples` captions the frozen starting model samples for the same image, an unbiased estimate
of the expected utility that minimum Bayes risk decoding (`rerank=mbr`) of that model maximises.
The references' reward is what the training images' captions teach, and on Flickr8k the
cross-entropy start has already fitted it (greedy CIDEr-D 0.95 on its training images, 0.48 on
val); agreement with the start's samples asks for its typical caption, the preference that lifts
every model's val CIDEr with MBR. The evidence is the start's, not the policy's: agreement with the
policy's own samples rewards its collapse (all samples alike agree most; measured on Flickr8k: val
CIDEr -5 in one epoch, policy entropy 2.0 -> 1.55 nats).
`repeat_penalty` is subtracted from the reward of every caption that repeats a word (the same word
twice in a row, evaluate.py's repeat rate). CIDEr-D already scores such a caption lower (Flickr8k:
"a brown dog is playing with a ball ball in the air" 0.72 against 1.02 without the second "ball"),
yet sampled SCST raised the share of greedy val captions that repeat a word from 2 to 6 of 1,000 in
six epochs: the penalty makes a repeat cost the same whatever else the caption gets right.
`unlikelihood_weight` adds token-level unlikelihood (Welleck et al. 2019) with the previous word as
the negative candidate: -log(1 - p(previous word)) at every sampled position, which lowers the
probability of a repeat where the samples did not make one. `greedy_unlikelihood_weight` adds the
same term on the greedy caption of each training image (Welleck et al.'s sequence-level unlikelihood
trains on the model's own greedy continuations): the path whose repeats the val repeat rate counts,
where a repeat is the most likely word and the term pushes hardest.
`dropout` (beam-SCST only) scores the beams with the decoder's dropout on, as M2 and X-modaler
train: a regulariser against fitting the training images' references; the beams themselves are
found, and the KL term computed, with dropout off.

With `data.hflip`, a mirror image's samples are rewarded against its mirrored references ("left"
and "right" swapped, the captions the loader serves with it), not the image's own.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from captionlab.data.mirror import caption_views
from captionlab.metrics.cider_d import CiderD
from captionlab.metrics.consensus import Consensus
from captionlab.metrics.diversity import repeats_a_word
from captionlab.metrics.nbest import sentence_bleu4
from captionlab.registry import register
from captionlab.search.beam import BeamSearch
from captionlab.search.greedy import GreedySearch
from captionlab.search.sample import SampleSearch
from captionlab.text import BOS_ID, EOS, EOS_ID, PAD_ID, tokenize
from captionlab.types import Batch

BASELINES = ("mean", "greedy")
SAMPLE_METHODS = ("sample", "beam")
END = EOS  # "<eos>" as a reward word: tokenize never makes it from a caption


def previous_word_unlikelihood(
    logprobs: torch.Tensor, sequences: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over the masked positions after the first of -log(1 - p(the previous token)):
    `logprobs` [R, L, V] of the captions `sequences` [R, L], `mask` [R, L] their words and end."""
    previous = logprobs[:, 1:].gather(2, sequences[:, :-1].unsqueeze(-1)).squeeze(-1)
    unlikely = -torch.log1p(-previous.exp().clamp(max=1 - 1e-6))
    weights = mask[:, 1:]
    return (unlikely * weights).sum() / weights.sum().clamp(min=1.0)


def caption_logprobs(
    decoder: nn.Module, memory: Any, sequences: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    """[R, L, V] log-probabilities the decoder gives each position of `sequences` [R, L], teacher
    forced from <bos>, caption r reading the image features of row `rows[r]` of `memory`."""
    inputs = torch.cat([torch.full_like(sequences[:, :1], BOS_ID), sequences[:, :-1]], dim=1)
    logits, _ = decoder.teacher_forcing(memory, inputs, rows)
    return torch.log_softmax(logits.float(), dim=-1)


def caption_mask(sequences: torch.Tensor) -> torch.Tensor:
    """1.0 at every word of `sequences` [R, L] and the <eos> that ends it; 0.0 at the padding after."""
    ended_before = torch.cumsum((sequences == EOS_ID).long(), dim=1) - (sequences == EOS_ID).long()
    return ((sequences != PAD_ID) & (ended_before == 0)).float()


def repeat_flags(captions: list[list[str]]) -> torch.Tensor:
    """1.0 for each caption (its reward words) that repeats a word, else 0.0."""
    return torch.tensor([float(repeats_a_word(words)) for words in captions])


def mean_of_others(reward: torch.Tensor) -> torch.Tensor:
    """[B, n] -> [B, n]: for each sample, the mean reward of the image's other samples."""
    return (reward.sum(dim=1, keepdim=True) - reward) / (reward.shape[1] - 1)


@register("loss", "scst")
class SelfCriticalLoss(nn.Module):
    stage = "scst"

    def __init__(
        self,
        baseline: str = "mean",
        num_samples: int = 5,
        sample_method: str = "sample",
        include_eos: bool = True,
        cider_weight: float = 1.0,
        bleu4_weight: float = 0.0,
        kl_weight: float = 0.0,
        entropy_weight: float = 0.0,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        max_new_tokens: int = 20,
        dropout: bool = False,
        mbr_weight: float = 0.0,
        mbr_samples: int = 0,
        repeat_penalty: float = 0.0,
        unlikelihood_weight: float = 0.0,
        greedy_unlikelihood_weight: float = 0.0,
    ):
        super().__init__()
        if baseline not in BASELINES:
            raise ValueError(f"loss.baseline={baseline}: choose one of {', '.join(BASELINES)}")
        if sample_method not in SAMPLE_METHODS:
            raise ValueError(f"loss.sample_method={sample_method}: choose one of {', '.join(SAMPLE_METHODS)}")
        if baseline == "mean" and num_samples < 2:
            raise ValueError(
                "loss.baseline=mean needs loss.num_samples >= 2 (the other samples are the baseline)"
            )
        if dropout and sample_method != "beam":
            raise ValueError(
                "loss.dropout=true needs loss.sample_method=beam: sampled captions must be scored "
                "by the very network that drew them, and dropout would score them with another"
            )
        if min(mbr_weight, mbr_samples, repeat_penalty, unlikelihood_weight, greedy_unlikelihood_weight) < 0:
            raise ValueError(
                "loss.mbr_weight, loss.mbr_samples, loss.repeat_penalty, loss.unlikelihood_weight and "
                "loss.greedy_unlikelihood_weight must be 0 or more"
            )
        if mbr_weight and baseline != "mean":
            raise ValueError(
                "loss.mbr_weight needs loss.baseline=mean: the baseline must hold the agreement "
                "term too, and the greedy caption's reward has none"
            )
        if mbr_weight and not mbr_samples:
            raise ValueError(
                "loss.mbr_weight needs loss.mbr_samples >= 1: the captions of the starting model "
                "the agreement is measured against"
            )
        self.mbr_weight = mbr_weight
        self.mbr_samples = mbr_samples if mbr_weight else 0
        self.repeat_penalty, self.unlikelihood_weight = repeat_penalty, unlikelihood_weight
        self.greedy_unlikelihood_weight = greedy_unlikelihood_weight
        self.baseline, self.num_samples, self.include_eos = baseline, num_samples, include_eos
        self.dropout = dropout
        self.cider_weight, self.bleu4_weight = cider_weight, bleu4_weight
        self.kl_weight, self.entropy_weight = kl_weight, entropy_weight
        if sample_method == "beam":  # the n best beams: distinct captions, no randomness
            self.sampler = BeamSearch(
                num_beams=num_samples, num_return_sequences=num_samples, max_new_tokens=max_new_tokens
            )
        else:
            self.sampler = SampleSearch(
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                num_return_sequences=num_samples,
                max_new_tokens=max_new_tokens,
            )
        self.greedy = GreedySearch(max_new_tokens=max_new_tokens)
        self.evidence_sampler = (
            SampleSearch(num_return_sequences=self.mbr_samples, max_new_tokens=max_new_tokens)
            if self.mbr_samples
            else None
        )
        self.cider: CiderD | None = None
        self.consensus: Consensus | None = None
        # (image position, mirrored) -> the references' texts and their reward words
        self._captions: dict[tuple[int, bool], list[str]] = {}
        self._references: dict[tuple[int, bool], list[list[str]]] = {}
        self._vocab = None
        # the starting model's weights (kl_weight, mbr_weight): saved in checkpoints, so a resumed run
        # keeps the same reference; the frozen module is rebuilt from them when first needed
        self._reference_weights: dict[str, torch.Tensor] | None = None
        self._reference: list[nn.Module] = []  # in a list: not a submodule, not trained or saved twice

    def prepare(self, datamodule: Any) -> None:
        """CIDEr-D's document frequencies from the whole train split's references, once; each
        image's references are the captions this run trains on (data.holdout_captions), and a
        mirror image's (data.hflip) are those captions mirrored."""
        views = caption_views(datamodule.hflip)
        self._captions = {
            (index, mirrored): [rewrite(c) for c in record.captions]
            for index, record in enumerate(datamodule.training_records())
            for mirrored, rewrite in views.items()
        }
        self._references = {
            key: [self.reward_words(c) for c in captions] for key, captions in self._captions.items()
        }
        self._vocab = datamodule.vocab
        self.cider = CiderD([self.reward_words(c) for c in r.captions] for r in datamodule.split("train"))
        if self.mbr_weight:  # MBR's CIDEr-D similarity, as rerank=mbr computes it
            self.consensus = Consensus("cider", [r.captions for r in datamodule.split("train")])

    def reward_words(self, caption: str, ended: bool = True) -> list[str]:
        """The words the reward sees: the caption's, then `<eos>` if it ended (include_eos)."""
        return tokenize(caption) + ([END] if self.include_eos and ended else [])

    def _sequence_words(self, sequence: torch.Tensor) -> list[str]:
        return self.reward_words(self._vocab.decode(sequence), ended=bool((sequence == EOS_ID).any()))

    def rewards(
        self, captions: list[list[str]], indices: list[int], mirrored: list[bool] | None = None
    ) -> torch.Tensor:
        """The reward of each caption (its reward words) against its image's references (those of
        its mirror image where `mirrored`)."""
        values = []
        for words, key in zip(captions, zip(indices, mirrored or [False] * len(indices))):
            reward = self.cider_weight * self.cider.score(
                words, self.cider.references(key, self._references[key])
            )
            if self.bleu4_weight:
                reward += self.bleu4_weight * sentence_bleu4(" ".join(words), self._captions[key])
            values.append(reward)
        return torch.tensor(values)

    def agreement(self, drawn: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
        """[B, n]: each of an image's `drawn` captions [B, n, L]' mean CIDEr-D similarity to its
        `evidence` captions [B, m, L]."""
        values = []
        for own, extra in zip(drawn.tolist(), evidence.tolist()):
            captions = [self._vocab.decode(tokens) for tokens in own + extra]
            similarity = self.consensus.similarities([None] * len(captions), captions)
            values.append(similarity[: len(own), len(own) :].mean(dim=1))
        return torch.stack(values).float()

    # the reference model (kl_weight, mbr_weight) --------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"reference": self._reference_weights} if self._reference_weights is not None else {}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._reference_weights = state.get("reference") if isinstance(state, dict) else None
        self._reference.clear()

    def reference(self, captioner: nn.Module) -> nn.Module:
        """The frozen starting model: the captioner as the stage began (or as the checkpoint
        being resumed recorded it)."""
        if not self._reference:
            if self._reference_weights is None:
                self._reference_weights = {k: v.detach().clone() for k, v in captioner.state_dict().items()}
            frozen = copy.deepcopy(captioner)
            frozen.load_state_dict(self._reference_weights)
            self._reference.append(frozen.eval().requires_grad_(False))
        return self._reference[0]

    def step(self, captioner: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Dropout is off while drawing: the samples are drawn without gradients, so their
        log-probabilities are recomputed, and they must be those of the very network that drew
        them (with dropout on, another random mask would score them: off-policy, and it makes
        a Flickr8k attention model worse instead of better). Beams are not samples of the
        policy, so with `dropout` they are scored with the decoder's dropout on."""
        if self.cider is None:
            raise RuntimeError("SelfCriticalLoss.prepare(datamodule) must run before training")
        was_training = captioner.training
        captioner.eval()
        try:
            return self._policy_gradient(captioner, batch, score_with_dropout=self.dropout and was_training)
        finally:
            captioner.train(was_training)

    def _policy_gradient(
        self, captioner: nn.Module, batch: Batch, score_with_dropout: bool
    ) -> dict[str, torch.Tensor]:
        memory = captioner.encode(batch)
        size, samples = memory.pooled.shape[0], self.num_samples
        indices = batch["index"].tolist()
        mirrored = batch["mirrored"].tolist() if "mirrored" in batch else [False] * size
        with torch.no_grad():
            drawn = self.sampler(captioner.decoder, memory).sequences  # [B, n, L]
            greedy = self.greedy(captioner.decoder, memory).best()  # the baseline, or logged
            if self.mbr_weight:
                start = self.reference(captioner)
                evidence = self.evidence_sampler(start.decoder, start.encode(batch)).sequences
        sequences = drawn.flatten(0, 1)
        words = [self._sequence_words(seq) for seq in sequences]
        sample_indices = [i for i in indices for _ in range(samples)]
        sample_mirrored = [m for m in mirrored for _ in range(samples)]
        reward = self.rewards(words, sample_indices, sample_mirrored).view(size, samples)
        greedy_words = [self._sequence_words(s) for s in greedy]
        greedy_reward = self.rewards(greedy_words, indices, mirrored).view(size, 1)
        repeats = repeat_flags(words)
        total = reward - self.repeat_penalty * repeats.view(size, samples)
        if self.mbr_weight:
            agreement = self.agreement(drawn, evidence)
            total = total + self.mbr_weight * agreement
        if self.baseline == "mean":
            baseline = mean_of_others(total)
        else:
            baseline = greedy_reward - self.repeat_penalty * repeat_flags(greedy_words).view(size, 1)
        advantage = (total - baseline).to(memory.pooled.device)

        rows = torch.arange(size, device=sequences.device).repeat_interleave(samples)
        captioner.decoder.train(score_with_dropout)
        logprobs = caption_logprobs(captioner.decoder, memory, sequences, rows)
        chosen = logprobs.gather(2, sequences.unsqueeze(-1)).squeeze(-1)
        mask = caption_mask(sequences)
        positions = mask.sum().clamp(min=1.0)
        loss = -(advantage.reshape(-1, 1) * chosen * mask).sum() / positions
        # the policy's entropy at every sampled position (logged; rewarded with entropy_weight)
        entropy = (-(logprobs.exp() * logprobs).sum(-1) * mask).sum() / positions
        figures = {
            "reward": reward.mean(),
            "reward_greedy": greedy_reward.mean(),
            "advantage": advantage.abs().mean(),
            "entropy": entropy.detach(),
            "sample_length": mask.sum(1).mean(),
            "sample_repeat_rate": repeats.mean(),
            "sample_limit_rate": (~(sequences == EOS_ID).any(1)).float().mean(),
        }
        if self.mbr_weight:
            figures["agreement"] = agreement.mean()
        if self.entropy_weight:
            loss = loss - self.entropy_weight * entropy
        if self.unlikelihood_weight:
            unlikelihood = previous_word_unlikelihood(logprobs, sequences, mask)
            figures["unlikelihood"] = unlikelihood.detach()
            loss = loss + self.unlikelihood_weight * unlikelihood
        if self.greedy_unlikelihood_weight:
            own_image = torch.arange(size, device=greedy.device)
            greedy_logprobs = caption_logprobs(captioner.decoder, memory, greedy, own_image)
            unlikelihood = previous_word_unlikelihood(greedy_logprobs, greedy, caption_mask(greedy))
            figures["greedy_unlikelihood"] = unlikelihood.detach()
            loss = loss + self.greedy_unlikelihood_weight * unlikelihood
        if self.kl_weight:
            reference = self.reference(captioner)
            with torch.no_grad():
                start = caption_logprobs(reference.decoder, reference.encode(batch), sequences, rows)
            policy = logprobs
            if score_with_dropout:  # the KL compares the networks, not one dropout mask with none
                captioner.decoder.eval()
                policy = caption_logprobs(captioner.decoder, memory, sequences, rows)
            kl = (policy.exp() * (policy - start)).sum(-1)
            kl = (kl * mask).sum() / positions
            figures["kl"] = kl.detach()
            loss = loss + self.kl_weight * kl
        return {"loss": loss, **figures}
