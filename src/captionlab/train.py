"""The training pipeline behind `python train.py`: data, model, fit, then the best checkpoint
scored on val and test, with every result written into the run folder."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from captionlab.checkpoint import load_module
from captionlab.errors import UserError
from captionlab.metrics.scorer import METRIC_NAMES
from captionlab.registry import build
from captionlab.training.loggers import fill_identity, finish_loggers, run_hparams, run_identity
from captionlab.training.module import CaptioningModule, module_class
from captionlab.utils.io import write_json, write_predictions
from captionlab.utils.provenance import provenance

log = logging.getLogger(__name__)

# saved in every checkpoint (data too, so that evaluate.py can score a checkpoint by itself)
MODULE_SECTIONS = ("model", "data", "encoder", "decoder", "search", "loss", "optim", "metrics")


def ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"cannot write to the output folder {folder} ({err.strerror}): "
                        "set paths.log_dir (or hydra.run.dir) to a writable folder") from None


def instantiate_all(section: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a callbacks/logger section (entries may be null)."""
    if not section:
        return []
    return [instantiate(entry) for entry in section.values() if entry and "_target_" in entry]


def metrics_table(results: dict[str, dict[str, Any]]) -> str:
    """Scores x100, as papers print them."""
    names = [n for n in METRIC_NAMES if any(n in r for r in results.values())]
    lines = ["split  images  " + "  ".join(f"{n:>7}" for n in names)]
    for split, scores in results.items():
        cells = "  ".join(f"{100 * scores[n]:7.2f}" if n in scores else f"{'-':>7}" for n in names)
        lines.append(f"{split:<5}  {scores['num_images']:>6}  {cells}")
    return "\n".join(lines)


def run_training(cfg: DictConfig) -> dict[str, Any]:
    output_dir = Path(cfg.paths.output_dir)
    ensure_writable(output_dir)
    pl.seed_everything(cfg.seed, workers=True)

    module_config = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in MODULE_SECTIONS}
    if cfg.get("init_from"):
        # a new stage (e.g. loss=scst) from a trained checkpoint: its model, vocabulary and preprocessing
        module = load_module(cfg.init_from, training=module_config)
        log.info("initialised from %s (stage %s)", cfg.init_from, module.hparams["stage"])
        datamodule = build(cfg.data, "data", vocab=module.vocab)
    else:
        module, datamodule = None, build(cfg.data, "data")
    datamodule.prepare()
    for line in datamodule.report:
        log.info(line)
    if module is None:
        module = module_class(cfg.model._target_, "model")(module_config, datamodule.vocab.words)
    if cfg.get("compile_decoder"):
        # the bound method, not the module: parameter names (and so checkpoints) stay the same
        decoder = module.captioner.decoder
        decoder.forward = torch.compile(decoder.forward, backend=cfg.get("compile_backend", "inductor"))
    datamodule.set_preprocessing(module.preprocessing)
    if datamodule.setup_feature_cache(module.captioner.encoder, "cuda" if torch.cuda.is_available() else "cpu"):
        log.info(datamodule.report[-1])

    fill_identity(cfg.get("logger"), run_identity(cfg, hydra_choices()))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=instantiate_all(cfg.get("callbacks")),
                                      logger=instantiate_all(cfg.get("logger")) or False)
    try:
        return _fit_and_score(cfg, trainer, module, datamodule, output_dir)
    finally:
        finish_loggers(trainer.loggers)


def hydra_choices() -> dict[str, str]:
    """The config group options of this run (empty when the config was not composed by a Hydra app)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    return {k: v for k, v in HydraConfig.get().runtime.choices.items() if v and not k.startswith("hydra")}


def _fit_and_score(cfg: DictConfig, trainer: pl.Trainer, module: CaptioningModule, datamodule, output_dir: Path) -> dict[str, Any]:
    for logger in trainer.loggers:
        logger.log_hyperparams(run_hparams(cfg, module))
    if trainer.is_global_zero:  # one run folder, written by one process
        module.vocab.save(output_dir / "vocab.json")
        write_json(output_dir / "provenance.json", provenance(Path(cfg.paths.root_dir), datamodule.fingerprint(), datamodule.report))
        write_json(output_dir / "search.json", module.search.config())

    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if checkpoint is not None and checkpoint.best_model_path else None
    if best is None and cfg.get("train", True) and not trainer.fast_dev_run:
        log.warning("no best checkpoint was saved; scoring the final weights")

    results: dict[str, Any] = {}
    trainer.validate(module, datamodule=datamodule, ckpt_path=best, verbose=False)
    results["val"] = module.scores["val"]
    if trainer.is_global_zero:
        write_predictions(output_dir / "predictions_val.json", module.predictions["val"])
    if cfg.get("test", True):
        if datamodule.records.get("test"):
            trainer.test(module, datamodule=datamodule, ckpt_path=best, verbose=False)
            results["test"] = module.scores["test"]
            if trainer.is_global_zero:
                write_predictions(output_dir / "predictions_test.json", module.predictions["test"])
        else:
            log.warning(f"data={datamodule.name} has no test captions: test stage skipped")
    summary = {**results, "best_checkpoint": best, "best_epoch": module.loaded_epoch if best else None, "data": datamodule.name}
    if trainer.is_global_zero:
        write_json(output_dir / "metrics.json", summary)
        log.info("metrics (x100) of %s:\n%s", best or "the final weights", metrics_table(results))
        log.info("run folder: %s", output_dir)
    return summary

