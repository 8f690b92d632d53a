"""Self-critical sequence training (Rennie et al. 2017), the second stage after cross-entropy.

For each image: draw `num_samples` captions from the model, reward each with CIDEr-D against the
image's references (document frequencies from the training references, computed once), optionally
mixed with BLEU-4, and push up the log-probability of captions that beat the baseline: the mean
reward of the image's other samples (`baseline: mean`, the default) or the reward of the greedy
caption (`baseline: greedy`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from captionlab.metrics.cider_d import CiderD
from captionlab.registry import register
from captionlab.search.greedy import GreedySearch
from captionlab.search.sample import SampleSearch
from captionlab.text import BOS_ID, EOS_ID, PAD_ID
from captionlab.types import Batch

BASELINES = ("mean", "greedy")


def mean_of_others(reward: torch.Tensor) -> torch.Tensor:
    """[B, n] -> [B, n]: for each sample, the mean reward of the image's other samples."""
    return (reward.sum(dim=1, keepdim=True) - reward) / (reward.shape[1] - 1)


def sentence_bleu4(candidate: str, references: list[str]) -> float:
    from pycocoevalcap.bleu.bleu import Bleu

    return float(Bleu(4).compute_score({0: references}, {0: [candidate]}, verbose=0)[0][3])


@register("loss", "scst")
class SelfCriticalLoss(nn.Module):
    stage = "scst"

    def __init__(
        self,
        baseline: str = "mean",
        num_samples: int = 5,
        cider_weight: float = 1.0,
        bleu4_weight: float = 0.0,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        max_new_tokens: int = 20,
    ):
        super().__init__()
        if baseline not in BASELINES:
            raise ValueError(f"loss.baseline={baseline}: choose one of {', '.join(BASELINES)}")
        if baseline == "mean" and num_samples < 2:
            raise ValueError(
                "loss.baseline=mean needs loss.num_samples >= 2 (the other samples are the baseline)"
            )
        self.baseline, self.num_samples = baseline, num_samples
        self.cider_weight, self.bleu4_weight = cider_weight, bleu4_weight
        self.sampler = SampleSearch(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            num_return_sequences=num_samples,
            max_new_tokens=max_new_tokens,
        )
        self.greedy = GreedySearch(max_new_tokens=max_new_tokens)
        self.cider: CiderD | None = None
        self._references: list[list[str]] = []
        self._vocab = None

    def prepare(self, datamodule: Any) -> None:
        """CIDEr-D's document frequencies from the training references, once."""
        records = datamodule.split("train")
        self._references = [list(r.captions) for r in records]
        self._vocab = datamodule.vocab
        self.cider = CiderD(self._references)

    def rewards(self, captions: list[str], indices: list[int]) -> torch.Tensor:
        values = []
        for caption, index in zip(captions, indices):
            reward = self.cider_weight * self.cider.score(
                caption, self.cider.references(index, self._references[index])
            )
            if self.bleu4_weight:
                reward += self.bleu4_weight * sentence_bleu4(caption, self._references[index])
            values.append(reward)
        return torch.tensor(values)

    def step(self, captioner: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Dropout is off in this step: the samples are drawn without gradients, so their
        log-probabilities are recomputed, and they must be those of the very network that drew
        them (with dropout on, another random mask would score them: off-policy, and it makes
        a Flickr8k attention model worse instead of better)."""
        if self.cider is None:
            raise RuntimeError("SelfCriticalLoss.prepare(datamodule) must run before training")
        was_training = captioner.training
        captioner.eval()
        try:
            return self._policy_gradient(captioner, batch)
        finally:
            captioner.train(was_training)

    def _policy_gradient(self, captioner: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        memory = captioner.encode(batch)
        size, samples = memory.pooled.shape[0], self.num_samples
        indices = batch["index"].tolist()
        with torch.no_grad():
            drawn = self.sampler(captioner.decoder, memory).sequences  # [B, n, L]
        texts = [self._vocab.decode(seq) for seq in drawn.flatten(0, 1)]
        reward = self.rewards(texts, [i for i in indices for _ in range(samples)]).view(size, samples)
        if self.baseline == "mean":
            baseline = mean_of_others(reward)
        else:
            with torch.no_grad():
                greedy = self.greedy(captioner.decoder, memory).best()
            baseline = self.rewards([self._vocab.decode(s) for s in greedy], indices).view(size, 1)
        advantage = (reward - baseline).to(memory.pooled.device)

        sequences = drawn.flatten(0, 1)
        inputs = torch.cat([torch.full_like(sequences[:, :1], BOS_ID), sequences[:, :-1]], dim=1)
        expanded = memory.index_select(torch.arange(size, device=sequences.device).repeat_interleave(samples))
        logprobs = torch.log_softmax(captioner.decoder(expanded, inputs).float(), dim=-1)
        chosen = logprobs.gather(2, sequences.unsqueeze(-1)).squeeze(-1)
        # every word and the <eos> that ends the caption; not the padding after it
        ended_before = torch.cumsum((sequences == EOS_ID).long(), dim=1) - (sequences == EOS_ID).long()
        mask = ((sequences != PAD_ID) & (ended_before == 0)).float()
        loss = -(advantage.reshape(-1, 1) * chosen * mask).sum() / mask.sum().clamp(min=1.0)
        return {"loss": loss, "reward": reward.mean(), "advantage": advantage.abs().mean()}
