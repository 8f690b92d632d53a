"""The training pipeline behind `python train.py`: data, model, fit, then the best checkpoint
scored on val and test, with every result written into the run folder."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf

from captionlab.checkpoint_file import checkpoint_hparams, read_checkpoint
from captionlab.errors import UserError, require_int
from captionlab.features import use_cached_features
from captionlab.pipelines.common import (
    build_all,
    default_device,
    ensure_writable,
    hydra_choices,
    metrics_table,
    warn_if_bf16_is_emulated,
)
from captionlab.registry import build, with_names
from captionlab.systems.base import BaseSystem, system_class
from captionlab.systems.loading import load_system
from captionlab.training.checkpoint_io import AtomicCheckpointIO
from captionlab.training.loggers import fill_identity, finish_loggers, run_hparams, run_identity
from captionlab.utils.io import write_json, write_predictions
from captionlab.utils.nested import flatten
from captionlab.utils.provenance import provenance

log = logging.getLogger(__name__)

# saved in every checkpoint (data too, so that evaluate.py can score a checkpoint by itself)
MODULE_SECTIONS = ("model", "data", "encoder", "decoder", "search", "rerank", "loss", "optim", "metrics")


# settings (last part of the key) that change neither the weights nor the data's meaning: where files
# are, how they are loaded, where the initial weights came from; a resume may differ in them
RESUME_IGNORED = {
    "root",
    "cache_dir",
    "feature_cache_dir",
    "cache_features",
    "on_error",
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "max_image_pixels",
    "allow_split_overlap",
    "pretrained",
    "checkpoint",
    "lr_mult",
    "embeddings_file",
}
RESUME_SECTIONS = ("model", "data", "encoder", "decoder")


def check_resume(cfg: DictConfig) -> dict[str, Any]:
    """The checkpoint that `ckpt_path` resumes, read safely (weights only) and checked against the
    composed model and data, before anything is written: a corrupt file or other settings are
    one line that names the differences, and the finished run's folder stays as it was."""
    checkpoint = read_checkpoint(cfg.ckpt_path)
    saved = checkpoint_hparams(checkpoint, cfg.ckpt_path)["config"]
    differences = []
    for section in RESUME_SECTIONS:
        # by registry names: a checkpoint of format 1 names classes by module path
        then = flatten(with_names(saved.get(section, {}), f"checkpoint {cfg.ckpt_path}"), section)
        now = flatten(with_names(cfg[section], section), section)
        for key in sorted(set(then) | set(now)):
            if key.rsplit(".", 1)[-1] not in RESUME_IGNORED and then.get(key) != now.get(key):
                differences.append(
                    f"{key}={now.get(key, '(not set)')} (the checkpoint's run: {then.get(key, '(not set)')})"
                )
    if differences:
        shown = "; ".join(differences[:4]) + (
            f"; and {len(differences) - 4} more" if len(differences) > 4 else ""
        )
        raise UserError(
            f"cannot resume from {cfg.ckpt_path}: this command composes another model or data: {shown}; "
            "repeat the run's own options (its .hydra/overrides.yaml)"
        )
    return checkpoint


def _check_resume_weights(module: BaseSystem, checkpoint: dict[str, Any], path: str) -> None:
    """The resumed weights fit the model built now (e.g. the vocabulary, from the data, is the same)."""
    if module.vocab.words != list(checkpoint["hyper_parameters"]["vocab"]):
        raise UserError(
            f"cannot resume from {path}: the data now gives another vocabulary "
            f"({len(module.vocab)} words, the checkpoint's run had {len(checkpoint['hyper_parameters']['vocab'])}); "
            "resume on the run's own data"
        )
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items() if isinstance(v, torch.Tensor)}
    found = {k: tuple(v.shape) for k, v in checkpoint["state_dict"].items() if isinstance(v, torch.Tensor)}
    if expected != found:
        key = next(k for k in sorted(set(expected) | set(found)) if expected.get(k) != found.get(k))
        raise UserError(
            f"cannot resume from {path}: its weights do not fit this model ({key}: "
            f"{found.get(key, 'absent')} in the checkpoint, {expected.get(key, 'absent')} here)"
        )


def check_run_options(cfg: DictConfig) -> None:
    """One line for values that would otherwise fail deep inside Lightning or torch."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise UserError(f"seed={seed!r}: give a whole number from 0 to {2**32 - 1}")
    trainer = cfg.trainer
    for key, minimum in (
        ("max_epochs", -1),
        ("min_epochs", 0),
        ("max_steps", -1),
        ("accumulate_grad_batches", 1),
        ("check_val_every_n_epoch", 1),
        ("log_every_n_steps", 1),
        ("num_sanity_val_steps", -1),
    ):
        if trainer.get(key) is not None:
            require_int(trainer[key], f"trainer.{key}", minimum)
    if cfg.get("init_from") and cfg.get("ckpt_path"):
        raise UserError(
            "give either init_from (a new stage from a checkpoint's weights) or ckpt_path "
            "(resume a stopped run), not both"
        )


def run_training(cfg: DictConfig) -> dict[str, Any]:
    check_run_options(cfg)
    warn_if_bf16_is_emulated(cfg.trainer)
    resumed = check_resume(cfg) if cfg.get("ckpt_path") else None
    output_dir = Path(cfg.paths.output_dir)
    ensure_writable(output_dir)
    pl.seed_everything(cfg.seed, workers=True)

    module_config = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) is not None else None
        for key in MODULE_SECTIONS
    }
    if cfg.get("init_from"):
        # a new stage (e.g. loss=scst) from a trained checkpoint: its model, vocabulary and preprocessing
        module = load_system(cfg.init_from, training=module_config)
        log.info("initialised from %s (stage %s)", cfg.init_from, module.hparams["stage"])
        datamodule = build(cfg.data, "data", vocab=module.vocab)
    else:
        module, datamodule = None, build(cfg.data, "data")
    datamodule.prepare()
    for line in datamodule.report:
        log.info(line)
    if module is None:
        module = system_class(cfg.model._target_, "model")(module_config, datamodule.vocab.words)
    else:
        _check_vocabulary_coverage(datamodule, cfg)
    if resumed is not None:
        _check_resume_weights(module, resumed, cfg.ckpt_path)
    if cfg.get("compile_decoder"):
        module.captioner.compile_teacher_forcing(cfg.get("compile_backend", "inductor"))
    datamodule.set_preprocessing(module.preprocessing)
    if use_cached_features(datamodule, module.captioner.encoder, default_device(), training=True):
        log.info(datamodule.report[-1])

    fill_identity(cfg.get("logger"), run_identity(cfg, hydra_choices()))
    trainer: pl.Trainer = build(
        cfg.trainer,
        "trainer",
        callbacks=build_all(cfg.get("callbacks"), "callbacks"),
        logger=build_all(cfg.get("logger"), "logger") or False,
        plugins=[AtomicCheckpointIO()],
    )
    try:
        return _fit_and_score(cfg, trainer, module, datamodule, output_dir)
    finally:
        finish_loggers(trainer.loggers)


def _check_vocabulary_coverage(datamodule, cfg: DictConfig) -> None:
    """A new stage on other data: the checkpoint's vocabulary must know most of the training words."""
    coverage, minimum = datamodule.vocab_coverage, float(cfg.get("init_from_min_coverage", 0.0))
    if coverage is not None and coverage < minimum:
        raise UserError(
            f"init_from={cfg.init_from}: its vocabulary covers only {100 * coverage:.1f}% of the words of "
            f"data={datamodule.name}'s training captions (the rest would become <unk>); train on the "
            f"checkpoint's data, or set init_from_min_coverage={coverage:.2f} to accept it"
        )


def _keep_scores(
    split: str, module: BaseSystem, trainer: pl.Trainer, output_dir: Path, results: dict[str, Any]
) -> None:
    """The split's scores into `results` and its captions to predictions_<split>.json; a split
    limited to no batches (`trainer.limit_<split>_batches=0`, e.g. for timing) has none."""
    if split not in module.scores:
        log.warning(f"{split}: no batches scored (trainer.limit_{split}_batches=0?): no {split} scores")
        return
    results[split] = module.scores[split]
    if trainer.is_global_zero:
        write_predictions(output_dir / f"predictions_{split}.json", module.predictions[split])


def _fit_and_score(
    cfg: DictConfig, trainer: pl.Trainer, module: BaseSystem, datamodule, output_dir: Path
) -> dict[str, Any]:
    for logger in trainer.loggers:
        logger.log_hyperparams(run_hparams(cfg, module))
    if trainer.is_global_zero:  # one run folder, written by one process
        module.vocab.save(output_dir / "vocab.json")
        write_json(
            output_dir / "provenance.json",
            provenance(Path(cfg.paths.root_dir), datamodule.fingerprint(), datamodule.report),
        )
        write_json(output_dir / "search.json", module.search.config())

    # every checkpoint Lightning reads (the resumed one, the best one) loads as weights only, as
    # evaluate.py's do, on every admitted torch (check_resume read the resumed one so already)
    safe = {"weights_only": True} if "weights_only" in inspect.signature(trainer.fit).parameters else {}
    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"), **safe)
        for line in datamodule.unreadable_report():
            log.warning(line)
    # the monitored checkpoint (callbacks.model_checkpoint), not last_checkpoint's every-epoch file
    checkpoint = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), None)
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    if best is None and cfg.get("train", True) and not trainer.fast_dev_run:
        log.warning("no best checkpoint was saved; scoring the final weights")
    if trainer.fast_dev_run and cfg.get("train", True):
        # Lightning saves nothing under fast_dev_run; one file lets evaluate and caption be tried too
        trainer.save_checkpoint(output_dir / "checkpoints" / "last.ckpt")
        log.info(
            "fast_dev_run: final weights (not a trained model) in %s",
            output_dir / "checkpoints" / "last.ckpt",
        )

    results: dict[str, Any] = {}
    trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False, **safe)
    _keep_scores("val", module, trainer, output_dir, results)
    if cfg.get("test", True):
        if datamodule.records.get("test"):
            trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False, **safe)
            _keep_scores("test", module, trainer, output_dir, results)
        else:
            log.warning(f"data={datamodule.name} has no test captions: test stage skipped")
    summary = {
        **results,
        "best_checkpoint": best,
        "best_epoch": module.loaded_epoch if best else None,
        "data": datamodule.name,
    }
    if datamodule.unreadable:  # images that did not decode, skipped under data.on_error=skip
        summary["skipped_images"] = {
            split: sorted(map(str, ids)) for split, ids in datamodule.unreadable.items()
        }
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", summary)
        log.info("metrics (x100) of %s:\n%s", best or "the final weights", metrics_table(results))
        log.info("run folder: %s", output_dir)
    return summary
