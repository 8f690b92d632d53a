"""What every captioning system (the LightningModule of a `conf/model` option) shares: generation
and scoring on val/test, optimizers, checkpoints.

Its hyperparameters are plain data (the component configs, the vocabulary's words, the image
preprocessing, the training stage): together with the weights they make a checkpoint
self-contained, and nothing in it is a pickled object.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import grad_norm
from torch import nn

from captionlab import plugins
from captionlab.checkpoint_file import format_record
from captionlab.errors import UserError
from captionlab.metrics.diversity import limit_rate, loop_rate, repeat_rate
from captionlab.metrics.gather import GeneratedCaptions
from captionlab.metrics.nbest import nbest_diversity
from captionlab.metrics.scorer import METRIC_NAMES, get_scorer
from captionlab.models.encoder_decoder import EncoderDecoder
from captionlab.registry import build, check_targets, registered_class, with_names
from captionlab.text import PAD_ID, Vocabulary
from captionlab.training.rng import capture_rng_states, restore_rng_states
from captionlab.types import Batch, Reranker, SearchOutput

log = logging.getLogger(__name__)


def system_class(target: str, what: str) -> type[BaseSystem]:
    """The system class a `model._target_` names (registered, and a BaseSystem)."""
    cls = registered_class(target, what)
    if not (isinstance(cls, type) and issubclass(cls, BaseSystem)):
        raise UserError(
            f"{what}: '_target_: {target}' is not a captioning model (a model/... component: model=captioner, knn or template)"
        )
    return cls


class BaseSystem(pl.LightningModule):
    """What every captioning model shares: generation on val/test, scoring on whole splits,
    `val/cider_best`, checkpoints that hold plain data only (and the random states for resuming).

    Subclasses build `self.captioner` in `build_captioner`: an nn.Module with `encoder` (a
    TimmEncoder) and `generate(batch, search) -> SearchOutput`, and define how they train.
    """

    default_stage = "xe"  # the training stage of a system whose checkpoint does not say otherwise

    def __init__(
        self,
        config: dict[str, Any],
        vocab: list[str],
        preprocessing: dict[str, Any] | None = None,
        stage: str | None = None,
    ):
        """`config` holds the model, data, encoder, decoder, search, loss, optim and metrics sections;
        `stage` names the training stage the weights come from (xe, scst, retrieval, ...)."""
        stage = stage or self.default_stage
        super().__init__()
        self.vocab = Vocabulary(vocab)
        # components by their registry names: the checkpoint stays loadable when classes move
        self.config = config = with_names(config, "config")
        self.captioner = self.build_captioner(config)
        self.search = build(config["search"], "search")
        # evaluate.py rerank=...: reorders each image's returned captions (minimum Bayes risk)
        self.rerank = build(config["rerank"], "rerank") if config.get("rerank") else None
        if self.rerank is not None:
            if not isinstance(self.rerank, Reranker):
                raise UserError(
                    f"rerank={config['rerank']['_target_']} is not a reranker: implement "
                    "captionlab.types.Reranker (needs_training_captions, prepare, check, __call__)"
                )
            if not isinstance(self.captioner, EncoderDecoder):
                raise UserError(
                    f"rerank={config['rerank']['_target_']} reorders a neural captioner's captions "
                    f"(model=captioner), not {config['model']['_target_']}'s"
                )
            self.rerank.check(self.search)
        # loggers get a flat view with parameter counts instead (train.py), not the vocabulary
        self.save_hyperparameters(
            {
                "config": config,
                "vocab": list(vocab),
                "preprocessing": preprocessing or self.captioner.encoder.preprocessing,
                "stage": stage,
            },
            logger=False,
        )
        self.generated = GeneratedCaptions(max_len=self.caption_capacity())
        # every returned caption (evaluate.py, search.num_return_sequences > 1): n-best figures
        self.generated_nbest = GeneratedCaptions(max_len=self.caption_capacity())
        self.nbest: dict[str, dict[Any, list[str]]] = {}
        self.register_buffer("cider_best", torch.tensor(0.0))
        self.predictions: dict[str, dict[Any, str]] = {}
        self.scores: dict[str, dict[str, Any]] = {}
        self.loaded_epoch: int | None = None

    def build_captioner(self, config: dict[str, Any]) -> nn.Module:
        raise NotImplementedError

    def caption_capacity(self) -> int:
        """The longest caption (in tokens) that generation can return."""
        return self.search.max_new_tokens

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = capture_rng_states()
        checkpoint["captionlab"] = format_record(plugins.record(check_targets(self.config, "config")))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning restores the weights; remember which epoch they come from (for metrics.json).
        self.loaded_epoch = checkpoint.get("epoch")
        # resuming training (not scoring a checkpoint): continue the random streams exactly
        if "rng_states" in checkpoint and self._trainer is not None and self._fitting:
            restore_rng_states(checkpoint["rng_states"])

    @property
    def preprocessing(self) -> dict[str, Any]:
        return self.hparams["preprocessing"]

    @property
    def _fitting(self) -> bool:
        return self.trainer.state.fn == TrainerFn.FITTING

    # training --------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        if self.rerank is not None:
            self.rerank.prepare([record.captions for record in self.trainer.datamodule.split("train")])
        trainable = any(p.requires_grad for p in self.parameters())
        if stage == "fit" and self.trainer.world_size > 1 and not trainable:
            raise UserError(
                f"{type(self).__name__} learns without gradients (one pass over the training images), "
                "which multi-process training cannot wrap: train it in one process (trainer=default or "
                "trainer=gpu); evaluate.py may still use several"
            )

    def training_objective(self, batch: Batch) -> dict[str, torch.Tensor]:
        """{"loss": ..., other figures to log} for one batch; {} when the model learns without a gradient."""
        raise NotImplementedError

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor | None:
        if batch["index"].numel() == 0:  # every image of the batch was skipped (data.on_error=skip)
            return None
        outputs = self.training_objective(batch)
        if "loss" not in outputs:
            return None
        loss, size = outputs["loss"], batch["index"].shape[0]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=size)
        for name, value in outputs.items():
            if name != "loss":
                self.log(f"train/{name}", value, on_step=True, on_epoch=True, batch_size=size)
        if self._trainer is not None and self.trainer.optimizers:
            self.log(
                "train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False
            )
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """The gradient's norm before clipping (how hard a step pushes; SCST's diagnosis)."""
        norms = grad_norm(self.captioner, norm_type=2)
        if norms:
            self.log("train/grad_norm", norms["grad_2.0_norm_total"], on_step=True, on_epoch=True)

    def configure_optimizers(self) -> Any:
        """`optim.optimizer` over the trainable parameters; the encoder's at `lr * encoder.lr_mult`."""
        optim = self.config["optim"]
        encoder = self.captioner.encoder
        encoder_ids = {id(p) for p in encoder.parameters()}
        rest = [p for p in self.captioner.parameters() if p.requires_grad and id(p) not in encoder_ids]
        groups = [{"params": rest}]
        encoder_params = [p for p in encoder.parameters() if p.requires_grad]
        if encoder_params:
            groups.append({"params": encoder_params, "lr": optim["optimizer"]["lr"] * encoder.lr_mult})
        optimizer = build(optim["optimizer"], "optim.optimizer")(groups)
        if not optim.get("scheduler"):
            return optimizer
        factory = build(optim["scheduler"], "optim.scheduler")
        # schedules defined over the whole run (warmup_cosine) get its length in steps
        needs_total = "total_steps" in inspect.signature(factory).parameters
        extra = {"total_steps": int(self.trainer.estimated_stepping_batches)} if needs_total else {}
        scheduler = factory(optimizer, **extra)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": optim.get("interval", "epoch")},
        }

    # generation and scoring ------------------------------------------------------------------
    def _generate_step(self, batch: Batch) -> None:
        if batch["index"].numel() == 0:
            return
        output = self.generate(batch)
        self.generated.update(batch["index"], output.best())
        if self._collects_nbest:
            capacity = self.caption_capacity()
            sequences = output.sequences[..., :capacity]
            padded = torch.nn.functional.pad(sequences, (0, capacity - sequences.shape[-1]), value=PAD_ID)
            self.generated_nbest.update(batch["index"], padded.flatten(1))

    def generate(self, batch: Batch) -> SearchOutput:
        """The search's captions of a batch, best first (as the reranker orders them, if any)."""
        if self.rerank is None:
            return self.captioner.generate(batch, self.search)
        with torch.no_grad():
            # encoded once: the reranker's own searches (MBR's samples) read the same features
            decoder, memory = self.captioner.decoder, self.captioner.encode(batch)
            output = self.search(decoder, memory)
            return self.rerank(decoder, memory, self.search, output, self.vocab.decode)

    @property
    def _collects_nbest(self) -> bool:
        """Scoring (not training) a search that returns several captions per image."""
        return getattr(self.search, "num_return_sequences", 1) > 1 and not (self._trainer and self._fitting)

    def on_validation_epoch_start(self) -> None:
        self._set_capacity()

    def on_test_epoch_start(self) -> None:
        self._set_capacity()

    def _set_capacity(self) -> None:
        capacity = self.caption_capacity()
        self.generated.max_len = capacity
        self.generated_nbest.max_len = capacity * getattr(self.search, "num_return_sequences", 1)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._generate_step(batch)

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._generate_step(batch)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.generated.reset()
            self.generated_nbest.reset()
            return
        scores = self._score("val")
        if self._fitting:
            self.cider_best.fill_(max(float(self.cider_best), scores["cider"]))
        scores["cider_best"] = self.cider_best.item()
        self.log("val/cider_best", scores["cider_best"], sync_dist=False)

    def on_test_epoch_end(self) -> None:
        self._score(self.trainer.datamodule.test_split)

    def _decoded_nbest(self, records: list) -> dict[Any, list[str]]:
        """{image_id: its returned captions, best first} (hypotheses search could not fill dropped)."""
        capacity = self.caption_capacity()
        generated = self.generated_nbest.compute()
        self.generated_nbest.reset()
        nbest = {}
        for index, tokens in sorted(generated.items()):
            rows = [tokens[i : i + capacity] for i in range(0, len(tokens), capacity)]
            nbest[records[index].image_id] = [
                self.vocab.decode(r) for r in rows if any(t != PAD_ID for t in r)
            ]
        return nbest

    def _score(self, split: str) -> dict[str, Any]:
        """Decode the gathered captions, score them on the whole split, log `<split>/<metric>`."""
        generated = self.generated.compute()
        self.generated.reset()
        records = self.trainer.datamodule.split(split)
        predictions = {
            records[i].image_id: self.vocab.decode(tokens) for i, tokens in sorted(generated.items())
        }
        metrics = self.config["metrics"]
        meteor = metrics["meteor_every_epoch"] if self._fitting else metrics["meteor_final"]
        references = self.trainer.datamodule.references(split)
        skipped = self.trainer.datamodule.unreadable.get(split, {})
        if skipped:  # images that did not decode (data.on_error=skip): scored without them, and said so
            log.warning(
                f"{split}: {len(skipped)} of {len(references)} images could not be decoded and are not scored "
                "(data.on_error=skip)"
            )
            references = {image_id: refs for image_id, refs in references.items() if image_id not in skipped}
        if len(predictions) < len(references):
            # Only under limit_*_batches / fast_dev_run: such scores are not comparable (CIDEr
            # depends on the whole set of images), so say so.
            log.warning(
                f"{split}: scoring {len(predictions)} of {len(references)} images (limited run); "
                "these scores are not comparable with full-split scores"
            )
            references = {image_id: references[image_id] for image_id in predictions}
        scores = get_scorer().score(
            predictions,
            references,
            meteor=meteor,
            per_image=bool(metrics.get("per_image", False)),
            spice=bool(metrics.get("spice", False)) and not self._fitting,
        )
        # how the captions end and repeat (a collapsing model repeats words or never stops)
        scores["repeat_rate"] = repeat_rate(predictions.values())
        scores["loop_rate"] = loop_rate(predictions.values())
        scores["limit_rate"] = limit_rate(generated.values(), self.caption_capacity())
        scores["mean_length"] = sum(len(c.split()) for c in predictions.values()) / max(len(predictions), 1)
        scores["complete_split"] = len(references) == len(records)
        if skipped:
            scores["skipped_images"] = len(skipped)
        if self._collects_nbest:
            nbest = self._decoded_nbest(records)
            scores.update(nbest_diversity(nbest, {i: references[i] for i in nbest if i in references}))
            self.nbest[split] = nbest
        prefix = "val" if split == "val" else "test"
        for name in (*METRIC_NAMES, "repeat_rate", "loop_rate", "limit_rate", "mean_length"):
            if name in scores:
                self.log(f"{prefix}/{name}", scores[name], sync_dist=False)
        self.predictions[split], self.scores[split] = predictions, scores
        return scores
