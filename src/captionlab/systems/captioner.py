"""`model=captioner`: a neural captioner (encoder + decoder, decoded by the search strategy)
trained by its loss: teacher-forced cross-entropy, or self-critical sequence training as a second stage."""

from __future__ import annotations

import logging
from typing import Any

import torch

from captionlab.models.encoder_decoder import EncoderDecoder
from captionlab.registry import build, register
from captionlab.systems.base import BaseSystem
from captionlab.types import Batch

log = logging.getLogger(__name__)


@register("model", "captioner")
class CaptionerSystem(BaseSystem):
    """A neural captioner (encoder + decoder, decoded by the search strategy) trained by its loss:
    teacher-forced cross-entropy, or self-critical sequence training as a second stage."""

    def __init__(
        self,
        config: dict[str, Any],
        vocab: list[str],
        preprocessing: dict[str, Any] | None = None,
        stage: str | None = None,
    ):
        """`stage` (xe, scst) defaults to the loss's."""
        loss = build(config["loss"], "loss")
        super().__init__(config, vocab, preprocessing, stage or loss.stage)
        self.loss = loss

    def build_captioner(self, config: dict[str, Any]) -> EncoderDecoder:
        # the encoder's construction (random initialisation before pretrained weights load) does not
        # draw from the run's random stream: the decoder starts the same whatever reads the images
        # (a timm backbone, its cached features, or the same features in a precomputed store)
        with torch.random.fork_rng(devices=[]):
            encoder = build(config["encoder"], "encoder")
        decoder = build(
            config["decoder"], "decoder", vocab_size=len(self.vocab), feature_dim=encoder.feature_dim
        )
        if getattr(decoder, "embeddings_file", None):
            covered = decoder.load_word_vectors(decoder.embeddings_file, self.vocab.words)
            log.info(
                "word vectors from %s cover %d of %d words", decoder.embeddings_file, covered, len(self.vocab)
            )
        return EncoderDecoder(encoder, decoder)

    def on_fit_start(self) -> None:
        self.loss.prepare(self.trainer.datamodule)

    def training_objective(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.loss.step(self.captioner, batch)
