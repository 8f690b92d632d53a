"""The pipeline behind `python caption.py ckpt_path=... images=<file|folder|glob>`: caption your
own images with a checkpoint alone, and draw where attending decoders looked."""

from __future__ import annotations

import csv
import glob
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from captionlab.data.datamodule import collate
from captionlab.data.images import DEFAULT_MAX_IMAGE_PIXELS, UnreadableImage, load_image, set_max_image_pixels
from captionlab.data.transforms import build_transform
from captionlab.errors import UserError
from captionlab.features.precomputed import precomputed_inputs, uses_precomputed
from captionlab.pipelines.common import (
    checkpoint_datamodule,
    checkpoint_paths,
    default_device,
    ensure_writable,
    named_section,
)
from captionlab.systems.loading import load_for_inference
from captionlab.utils.io import atomic_write, write_json
from captionlab.viz.attention import caption_overlay

log = logging.getLogger(__name__)


def find_images(spec: str) -> list[Path]:
    """A file, a folder (every file in it and below, hidden ones excepted) or a glob pattern."""
    path = Path(spec).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise UserError(f"images={spec}: the folder is empty; point images= at image files")
        return files
    if glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        if not files:
            raise UserError(f"images={spec}: the pattern matches no files")
        return files
    raise UserError(f"images={spec}: no such file or folder")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device(default_device())
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name}: no CUDA device here; use device=cpu")
    return torch.device(name)


def _pixel_inputs(
    files: list[Path], preprocessing: dict[str, Any], cfg: DictConfig
) -> tuple[list[tuple[Path, dict[str, torch.Tensor]]], list[Path]]:
    """The readable images, preprocessed, and the files that are not."""
    transform = build_transform(preprocessing)
    set_max_image_pixels(cfg.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS))
    images, skipped = [], []
    for path in files:
        try:
            images.append((path, {"image": transform(load_image(path))}))
        except UnreadableImage as err:
            skipped.append(path)
            log.warning("skipped %s: not a readable image (%s)", path, err)
    return images, skipped


def _training_captions(cfg: DictConfig, module: Any, checkpoint: str) -> list[list[str]]:
    """The captions of the checkpoint's training images (for rerank=mbr's CIDEr-D utility)."""
    try:
        datamodule = checkpoint_datamodule(cfg, module, checkpoint)
        return [record.captions for record in datamodule.split("train")]
    except UserError as err:
        raise UserError(
            f"rerank=mbr with the CIDEr-D utility needs the training captions for its document "
            f"frequencies, and they cannot be read: {err} (or use rerank.utility=bleu, which needs none)"
        ) from None


def run_captioning(cfg: DictConfig) -> list[dict[str, Any]]:
    output_dir = Path(cfg.paths.output_dir)
    ensure_writable(output_dir)
    search, rerank = named_section(cfg, "search"), named_section(cfg, "rerank")
    paths = checkpoint_paths(cfg.ckpt_path)
    module = load_for_inference(
        paths,
        cfg.get("ensemble_weights"),
        overrides={k: v for k, v in (("search", search), ("rerank", rerank)) if v},
    )
    if module.rerank is not None:
        module.rerank.prepare(
            _training_captions(cfg, module, paths[0]) if module.rerank.needs_training_captions else []
        )
    device = _device(str(cfg.device))
    captioner = module.captioner.to(device).eval()
    if uses_precomputed(module.preprocessing):
        images, skipped = precomputed_inputs(cfg.images, captioner.encoder), []
    else:
        images, skipped = _pixel_inputs(find_images(str(cfg.images)), module.preprocessing, cfg)
    if not images:
        raise UserError(f"images={cfg.images}: none of the {len(skipped)} files is a readable image")

    results: list[dict[str, Any]] = []
    for start in range(0, len(images), int(cfg.batch_size)):
        batch = images[start : start + int(cfg.batch_size)]
        collated = collate([{**item, "index": row} for row, (_, item) in enumerate(batch)])
        inputs = {key: value.to(device) for key, value in collated.items() if key != "index"}
        output = module.generate(inputs)
        # retrieval models also say which training images their captions come from
        neighbours = captioner.neighbours(inputs) if hasattr(captioner, "neighbours") else None
        for row, (path, item) in enumerate(batch):
            hypotheses = [
                {"caption": module.vocab.decode(seq), "score": float(score)}
                for seq, score in zip(output.sequences[row], output.scores[row])
                if score > float("-inf")
            ]
            result = {"image": str(path), "caption": hypotheses[0]["caption"], "hypotheses": hypotheses}
            if neighbours is not None:
                result["neighbours"] = neighbours[row]
            if cfg.overlays and output.attentions is not None and "image" in item:
                name = f"{len(results):05d}_{path.stem}.png"
                target = output_dir / "overlays" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                caption_overlay(
                    item["image"],
                    module.preprocessing,
                    module.vocab.words,
                    output.sequences[row, 0],
                    output.attentions[row, 0],
                ).save(target)
                result["overlay"] = str(target)
            results.append(result)
            _print(result)

    write_json(output_dir / "captions.json", results)
    with atomic_write(output_dir / "captions.csv", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "rank", "caption", "score"])
        for result in results:
            for rank, hypothesis in enumerate(result["hypotheses"], 1):
                writer.writerow([result["image"], rank, hypothesis["caption"], f"{hypothesis['score']:.4f}"])
    log.info(
        "captioned %d images, skipped %d (not readable images); results in %s",
        len(results),
        len(skipped),
        output_dir,
    )
    return results


def _print(result: dict[str, Any]) -> None:
    if len(result["hypotheses"]) == 1:
        print(f"{result['image']}: {result['caption']}")
    else:
        print(result["image"])
        for rank, hypothesis in enumerate(result["hypotheses"], 1):
            print(f"  {rank}. {hypothesis['score']:8.3f}  {hypothesis['caption']}")
    if "neighbours" in result:
        print(
            "  nearest training images: "
            + ", ".join(f"{n['image']} ({n['similarity']:.3f})" for n in result["neighbours"])
        )
