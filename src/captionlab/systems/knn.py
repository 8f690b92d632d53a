"""`model=knn`: caption an image with a training caption (Devlin et al. 2015, "Exploring Nearest
Neighbor Approaches for Image Captioning").

The training images are indexed by the encoder's pooled features (unit vectors, so a matrix
product gives cosine similarities). For a query, the captions of its `k` nearest training images
are the candidates, and the one with the highest mean similarity to the other candidates (the
consensus, CIDEr-D or BLEU-4) is returned; `k=1` returns the nearest image's first caption.
"Training" is one pass over the training split with no gradient. The index (features, captions,
file names) is saved in the checkpoint as plain data.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from captionlab.errors import UserError
from captionlab.metrics.consensus import CONSENSUS_METRICS, Consensus
from captionlab.models.encoder_decoder import encode_batch
from captionlab.models.encoders import TimmEncoder
from captionlab.registry import build, register
from captionlab.search.base import SearchStrategy
from captionlab.systems.base import BaseSystem
from captionlab.systems.output import texts_to_output
from captionlab.text import Vocabulary, tokenize
from captionlab.types import Batch, SearchOutput

log = logging.getLogger(__name__)


class NearestNeighbourCaptioner(nn.Module):
    def __init__(self, encoder: TimmEncoder, vocab: Vocabulary, k: int = 5, consensus: str = "cider"):
        super().__init__()
        if int(k) < 1:
            raise UserError(f"model.k={k}: use 1 or more neighbours")
        if consensus not in CONSENSUS_METRICS:
            raise UserError(f"model.consensus={consensus}: choose one of {', '.join(CONSENSUS_METRICS)}")
        if encoder.zero_features:
            raise UserError("model=knn with encoder.zero_features=true: there are no features to retrieve by")
        self.encoder, self.vocab, self.k, self.consensus_metric = encoder, vocab, int(k), consensus
        self.names: list[str] = []
        self.captions: list[list[str]] = []
        self.register_buffer("features", torch.zeros(0, encoder.feature_dim), persistent=False)
        self.register_buffer("filled", torch.zeros(0, dtype=torch.bool), persistent=False)
        self._consensus: Consensus | None = None
        self.longest_caption = 0  # in tokens with <eos>: generation must return every indexed caption whole

    # the index ------------------------------------------------------------------------------
    def start_index(self, names: list[str], captions: list[list[str]]) -> None:
        if not names:
            raise UserError("model=knn: the training split is empty; there is nothing to index")
        self._set_captions(names, captions)
        self.features = torch.zeros(len(names), self.encoder.feature_dim, device=self.features.device)
        self.filled = torch.zeros(len(names), dtype=torch.bool, device=self.features.device)

    def _set_captions(self, names: list[str], captions: list[list[str]]) -> None:
        self.names, self.captions, self._consensus = list(names), [list(c) for c in captions], None
        self.longest_caption = 1 + max((len(tokenize(c)) for cs in self.captions for c in cs), default=0)

    def pooled_unit_vectors(self, batch: Batch) -> torch.Tensor:
        pooled = encode_batch(self.encoder, batch).pooled
        if pooled.ndim != 2:
            raise UserError(
                f"model=knn: encoder {self.encoder.name} gives no pooled vector (its pooled output "
                f"has shape {tuple(pooled.shape)}); choose an encoder with global pooling"
            )
        return F.normalize(pooled.float(), dim=-1)

    def add(self, indices: torch.Tensor, batch: Batch) -> None:
        self.features[indices] = self.pooled_unit_vectors(batch)
        self.filled[indices] = True

    def finish_index(self) -> int:
        """Keep the rows that were filled (all of them, unless the run was limited); their number."""
        keep = self.filled.nonzero().flatten().tolist()
        if len(keep) < len(self.names):
            log.warning(
                "model=knn: indexed %d of %d training images (limited run)", len(keep), len(self.names)
            )
            self._set_captions([self.names[i] for i in keep], [self.captions[i] for i in keep])
            self.features, self.filled = self.features[keep], self.filled[keep]
        if not keep:
            raise UserError("model=knn: no training image was indexed; the index is empty")
        return len(keep)

    def get_extra_state(self) -> dict[str, Any]:
        return {"names": self.names, "captions": self.captions, "features": self.features.cpu()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._set_captions(state["names"], state["captions"])
        self.features = state["features"].to(self.features.device)
        self.filled = torch.ones(len(self.names), dtype=torch.bool, device=self.features.device)

    # captioning -----------------------------------------------------------------------------
    def nearest(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Similarities and rows of the k nearest training images, nearest first: [B, k] each."""
        if not self.names:
            raise UserError("model=knn: the index is empty; train (index) the model first")
        similarity = self.pooled_unit_vectors(batch) @ self.features.T
        return similarity.topk(min(self.k, len(self.names)), dim=1)

    def neighbours(self, batch: Batch) -> list[list[dict[str, Any]]]:
        """For caption.py: the file names and similarities of each image's nearest training images."""
        similarity, rows = self.nearest(batch)
        return [
            [{"image": self.names[r], "similarity": round(float(s), 4)} for s, r in zip(sims, image_rows)]
            for sims, image_rows in zip(similarity.tolist(), rows.tolist())
        ]

    def ranked_candidates(self, image_rows: list[int]) -> list[tuple[str, float]]:
        """The candidates (captions of these training images), best first, with their consensus."""
        if self.k == 1:
            return [(caption, 0.0) for caption in self.captions[image_rows[0]]]
        if self._consensus is None:
            self._consensus = Consensus(self.consensus_metric, self.captions)
        keys = [(row, j) for row in image_rows for j in range(len(self.captions[row]))]
        texts = [self.captions[row][j] for row, j in keys]
        scores = self._consensus.scores(keys, texts)
        order = sorted(range(len(texts)), key=lambda i: -scores[i])  # stable: ties keep the nearer image
        return [(texts[i], scores[i]) for i in order]

    @torch.no_grad()
    def generate(self, batch: Batch, search: SearchStrategy) -> SearchOutput:
        """`search.num_return_sequences` candidates per image (the other search settings do not apply)."""
        returned = search.num_return_sequences
        _, rows = self.nearest(batch)
        chosen = [self.ranked_candidates(image_rows)[:returned] for image_rows in rows.tolist()]
        return texts_to_output(self.vocab, chosen, self.features.device)


@register("model", "knn")
class KnnSystem(BaseSystem):
    """Trains (indexes) in one pass with no gradient; val/test/evaluate.py/caption.py as for any model."""

    default_stage = "retrieval"

    def build_captioner(self, config: dict[str, Any]) -> NearestNeighbourCaptioner:
        model = config["model"]
        # the index holds fixed features: the encoder never trains (and its features can be cached)
        encoder = build({**config["encoder"], "freeze": "all"}, "encoder")
        return NearestNeighbourCaptioner(
            encoder, self.vocab, k=model.get("k", 5), consensus=model.get("consensus", "cider")
        )

    def caption_capacity(self) -> int:
        return self.captioner.longest_caption or self.search.max_new_tokens

    def on_fit_start(self) -> None:
        records = self.trainer.datamodule.training_records()  # the captions it may return
        captions = [list(r.captions) for r in records]
        missing = sorted({w for cs in captions for c in cs for w in tokenize(c)} - set(self.vocab.words))
        if missing:
            raise UserError(
                f"model=knn returns training captions whole, but {len(missing)} of their words are not "
                f"in the vocabulary (e.g. {', '.join(missing[:3])}): set data.min_word_count=1"
            )
        self.captioner.start_index([str(r.image_id) for r in records], captions)

    def training_objective(self, batch: Batch) -> dict[str, torch.Tensor]:
        self.captioner.add(batch["index"], batch)
        return {}

    def on_train_epoch_end(self) -> None:
        log.info("model=knn: indexed %d training images", self.captioner.finish_index())
        self.trainer.should_stop = True  # one pass is the whole training

    def configure_optimizers(self) -> None:
        return None
