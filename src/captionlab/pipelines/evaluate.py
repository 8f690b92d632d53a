"""The evaluation pipeline behind `python evaluate.py`.

- `ckpt_path=... split=val|test|train`: the model, vocabulary, preprocessing and data come from the
  checkpoint; a search or data group named on the command line replaces the checkpoint's.
- `predictions=<COCO results file> data=... split=...`: score captions made by any other system
  on exactly the same references and scoring path.

Results go into a run folder of their own (`outputs/eval/runs/<time>/`).
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig

from captionlab.data.images import load_image
from captionlab.data.records import canonical_split
from captionlab.data.results_file import read_results_file
from captionlab.errors import UserError
from captionlab.features import use_cached_features
from captionlab.metrics.chair import ObjectWords, chair
from captionlab.metrics.clip_score import load_clip, score_split
from captionlab.metrics.diversity import diversity
from captionlab.metrics.scorer import get_scorer
from captionlab.pipelines.common import (
    checkpoint_datamodule,
    checkpoint_paths,
    default_device,
    ensure_writable,
    metrics_table,
    named_section,
)
from captionlab.registry import build
from captionlab.systems.loading import load_for_inference
from captionlab.utils.io import write_json, write_predictions

log = logging.getLogger(__name__)


def _caption_with_checkpoint(cfg: DictConfig, split: str):
    """(datamodule, predictions, scores) of the checkpoint's captions of `split`."""
    # the system is built from its final config: the checkpoint's, with the search named on the
    # command line and this evaluation's metrics (every image scored too, for finding failures)
    metrics = {
        "meteor_every_epoch": False,
        "meteor_final": bool(cfg.metrics.meteor),
        "spice": bool(cfg.metrics.spice),
        "per_image": True,
    }
    search, rerank = named_section(cfg, "search"), named_section(cfg, "rerank")
    paths = checkpoint_paths(cfg.ckpt_path)
    module = load_for_inference(
        paths,
        cfg.get("ensemble_weights"),
        overrides={"metrics": metrics, **{k: v for k, v in (("search", search), ("rerank", rerank)) if v}},
    )
    datamodule = checkpoint_datamodule(cfg, module, paths[0], test_split=split)
    datamodule.split(split)  # a clear error when the data has no such split
    if use_cached_features(datamodule, module.captioner.encoder, default_device()):
        log.info(datamodule.report[-1])
    trainer: pl.Trainer = build(
        cfg.trainer, "trainer", logger=False, callbacks=[], enable_checkpointing=False
    )
    trainer.test(module, datamodule=datamodule, verbose=False)
    checkpoints = [str(Path(p).resolve()) for p in paths]
    source = {
        "checkpoint": checkpoints[0] if len(checkpoints) == 1 else checkpoints,
        "search": module.search.config(),
    }
    if module.rerank is not None:
        source["rerank"] = module.config["rerank"]
    if len(checkpoints) > 1 or cfg.get("ensemble_weights"):
        source["ensemble_weights"] = module.captioner.decoder.weights
    if split in module.nbest:  # written next to the predictions, not into metrics.json
        source["_nbest"] = module.nbest[split]
    return datamodule, module.predictions[split], dict(module.scores[split]), source


def _score_results_file(cfg: DictConfig, split: str):
    data = named_section(cfg, "data")
    if data is None:
        raise UserError("predictions= needs the data it was made for: add data=<name> data.root=<folder>")
    datamodule = build(data, "data")
    references = datamodule.references(split)
    predictions = read_results_file(cfg.predictions, references)
    scores = get_scorer().score(
        predictions,
        references,
        meteor=bool(cfg.metrics.meteor),
        per_image=True,
        spice=bool(cfg.metrics.spice),
    )
    return datamodule, predictions, scores, {"predictions": str(Path(cfg.predictions).resolve())}


def _chair(datamodule: Any, split: str, predictions: dict[Any, str]) -> dict[str, float]:
    """CHAIR-i/-s with the data source's objects: the shapes generator's labels, COCO's instances."""
    source = datamodule.source
    if not hasattr(source, "objects"):
        raise UserError(
            f"metrics.chair=true needs each image's objects, which data={datamodule.name} does not have: "
            "use data=shapes (the generator's labels) or data=coco (instance annotations, data.instances)"
        )
    words = ObjectWords(source.object_words()) if source.object_words() else ObjectWords.coco()
    return chair(predictions, source.objects(datamodule.split(split)), words)


def _clip_score(cfg: DictConfig, datamodule: Any, split: str, predictions: dict[Any, str]):
    """(means, per image) of CLIP-S and RefCLIP-S, or None (with a one-line message) without weights."""
    try:
        model, preprocess, tokenizer = load_clip(
            str(cfg.metrics.clip_model), cfg.metrics.get("clip_checkpoint"), default_device()
        )
    except UserError as err:
        log.warning("CLIPScore skipped: %s", err)
        return None
    records = datamodule.split(split)
    return score_split(
        model,
        preprocess,
        tokenizer,
        {r.image_id: partial(load_image, r.image_path) for r in records},
        predictions,
        {r.image_id: list(r.captions) for r in records},
        device=default_device(),
    )


def run_evaluation(cfg: DictConfig) -> dict[str, Any]:
    split = canonical_split(str(cfg.split))  # train too: how a model fits its images, or a teacher's captions
    if not cfg.get("ckpt_path") and not cfg.get("predictions"):
        raise UserError(
            "give ckpt_path=<run>/checkpoints/best.ckpt (or predictions=<COCO results file> data=...)"
        )
    output_dir = Path(cfg.paths.output_dir)
    ensure_writable(output_dir)

    evaluate = _score_results_file if cfg.get("predictions") else _caption_with_checkpoint
    datamodule, predictions, scores, source = evaluate(cfg, split)
    per_image = scores.pop("per_image")
    scores.update(diversity(predictions, (c for r in datamodule.split("train") for c in r.captions)))
    if cfg.metrics.get("chair"):
        scores.update(_chair(datamodule, split, predictions))
    if cfg.metrics.get("clip_score"):
        clip = _clip_score(cfg, datamodule, split, predictions)
        if clip is not None:
            means, clip_per_image = clip
            scores.update(means)
            for image_id, values in clip_per_image.items():
                per_image.setdefault(image_id, {}).update(values)

    nbest = source.pop("_nbest", None)
    summary = {split: scores, **source, "data": datamodule.name}
    if pl.utilities.rank_zero.rank_zero_only.rank == 0:
        write_json(output_dir / "metrics.json", summary)
        write_predictions(output_dir / f"predictions_{split}.json", predictions)
        if nbest is not None:
            write_json(
                output_dir / f"nbest_{split}.json", [{"image_id": i, "captions": c} for i, c in nbest.items()]
            )
        write_json(
            output_dir / f"per_image_{split}.json",
            [
                {"image_id": image_id, "caption": predictions[image_id], **values}
                for image_id, values in per_image.items()
            ],
        )
        print(metrics_table({split: scores}))
        print(
            f"diversity: {scores['distinct_words']} distinct words, {100 * scores['novel_captions']:.1f}% of captions "
            f"not in the training captions, {scores['mean_length']:.2f} words per caption, "
            f"{100 * scores['repeat_rate']:.1f}% repeat a word, {100 * scores['loop_rate']:.1f}% a phrase"
            + (
                f", {100 * scores['limit_rate']:.1f}% cut at the length limit"
                if "limit_rate" in scores
                else ""
            )
        )
        if "clip_s" in scores:
            print(
                f"CLIP-S {100 * scores['clip_s']:.2f}, RefCLIP-S {100 * scores['refclip_s']:.2f} ({cfg.metrics.clip_model})"
            )
        if "chair_i" in scores:
            print(
                f"hallucination: CHAIR-i {100 * scores['chair_i']:.2f}, CHAIR-s {100 * scores['chair_s']:.2f}, "
                f"{scores['object_mentions']:.2f} object mentions per caption, object recall "
                f"{100 * scores['object_recall']:.1f}%"
            )
        if "div1" in scores:
            print(
                f"n-best ({scores['nbest']} per image): Div-1 {scores['div1']:.3f}, Div-2 {scores['div2']:.3f}, "
                f"mBLEU-4 {100 * scores['mbleu4']:.2f}, self-CIDEr {scores['self_cider']:.3f}, "
                f"oracle CIDEr {100 * scores['oracle_cider']:.2f}"
            )
        log.info("run folder: %s", output_dir)
    return summary
