"""Rebuilding a system from a checkpoint: tensors and plain data only (captionlab.checkpoint_file),
components from the registry (a checkpoint can only name registered classes)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from captionlab import plugins
from captionlab.checkpoint_file import checkpoint_format, checkpoint_hparams, read_checkpoint
from captionlab.errors import UserError
from captionlab.models.decoders.ensemble import EnsembleDecoder
from captionlab.models.encoder_decoder import EncoderDecoder
from captionlab.models.encoders import EncoderSet
from captionlab.registry import check_targets, origins
from captionlab.systems.base import BaseSystem, system_class


def load_system(
    path: str | Path, training: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None
) -> BaseSystem:
    """Rebuild the model, vocabulary and preprocessing from the checkpoint alone.

    `training`: config sections (data, search, loss, optim, metrics) that replace the checkpoint's,
    to start a new training stage from its weights (`train.py init_from=...`); the model
    (encoder, decoder) always comes from the checkpoint, and the stage from the new loss.
    `overrides`: sections that replace the checkpoint's for scoring or captioning (search, metrics),
    so the system is built from its final config."""
    checkpoint = read_checkpoint(path)
    hparams = checkpoint_hparams(checkpoint, path)
    plugins.load()  # the installed ones; named ones (plugins=[...]) are loaded at start-up
    plugins.check_available(checkpoint_format(checkpoint, path)["plugins"], origins(), f"checkpoint {path}")
    config = copy.deepcopy(hparams["config"])
    stage = hparams["stage"]
    if training:
        config.update(
            {k: v for k, v in copy.deepcopy(training).items() if k not in ("model", "encoder", "decoder")}
        )
        stage = None
    config.update(copy.deepcopy(overrides or {}))
    for section in ("model", "data", "encoder", "decoder", "search", "rerank", "loss", "optim"):
        check_targets(config.get(section, {}), f"checkpoint {path}, section '{section}'")
    # The weights come from the checkpoint: do not fetch pretrained ones again.
    config["encoder"].update(
        {k: v for k, v in (("pretrained", False), ("checkpoint", None)) if k in config["encoder"]}
    )
    if "embeddings_file" in config["decoder"]:
        config["decoder"]["embeddings_file"] = None
    model = system_class(config["model"]["_target_"], f"checkpoint {path}, section 'model'")
    system = model(config, hparams["vocab"], hparams["preprocessing"], stage)
    try:
        result = system.load_state_dict(checkpoint["state_dict"], strict=False)
    except RuntimeError as err:
        raise UserError(
            f"{path} does not match the model its config describes "
            f"({str(err).splitlines()[0]}); was it made by another captionlab version?"
        ) from None
    # The loss's own state (SCST's reference weights) belongs to the training stage, not to the
    # model: a new stage starts without it, and scoring does not need it.
    mismatched = [k for k in (*result.missing_keys, *result.unexpected_keys) if not k.startswith("loss.")]
    if mismatched:
        raise UserError(
            f"{path} does not match the model its config describes (e.g. {mismatched[0]!r} is "
            f"{'missing' if mismatched[0] in result.missing_keys else 'unexpected'}); "
            "was it made by another captionlab version?"
        )
    if training is not None:  # a new stage: its own best score, and it trains (dropout on)
        system.cider_best.zero_()
    system.train(training is not None)
    return system


def load_for_inference(
    paths: str | Path | Sequence[str | Path],
    weights: Sequence[float] | None = None,
    overrides: dict[str, Any] | None = None,
) -> BaseSystem:
    """The system `evaluate.py`/`caption.py` decode with: one checkpoint, or a test-time ensemble
    of several (`ckpt_path=[a,b,c]`, optional `ensemble_weights`)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise UserError("ckpt_path=[]: name at least one checkpoint")
    if len(paths) == 1 and weights is None:
        return load_system(paths[0], overrides=overrides)
    return load_ensemble(paths, weights, overrides)


def load_ensemble(
    paths: Sequence[str | Path],
    weights: Sequence[float] | None = None,
    overrides: dict[str, Any] | None = None,
) -> BaseSystem:
    """The first checkpoint's system decoding with every member's decoder (`EnsembleDecoder`).

    Members are neural captioners with the same vocabulary and image preprocessing; their decoders
    may differ, and so may their encoders (weights or grid options such as `encoder.feature_stage`):
    members that share one encoder share its features, and distinct encoders run side by side
    (`EncoderSet`, each from its own feature cache), each member reading its own. The search and
    data are the first checkpoint's unless `overrides` name them."""
    members = [load_system(path, overrides=overrides) for path in paths]
    first = members[0]
    encoders: list[torch.nn.Module] = []  # the distinct ones, in order of first use
    reads: list[int] = []  # the encoder each member reads
    for path, member in zip(paths, members):
        if not isinstance(member.captioner, EncoderDecoder):
            raise UserError(
                f"{path}: a {member.config['model']['_target_']} model cannot join an ensemble; "
                "ensembles combine neural captioners (model=captioner)"
            )
        if member.vocab.words != first.vocab.words:
            raise UserError(
                f"{path} and {paths[0]} have different vocabularies ({len(member.vocab)} and "
                f"{len(first.vocab)} words): ensemble members must be trained on the same data "
                "with the same vocabulary settings"
            )
        if member.preprocessing != first.preprocessing:
            raise UserError(
                f"{path} and {paths[0]} preprocess images differently (encoder, input size, crop or "
                "feature store): ensemble members must share the preprocessing"
            )
        encoder = member.captioner.encoder
        same = [i for i, known in enumerate(encoders) if _same_encoder(known, encoder)]
        if not same:
            encoders.append(encoder)
        reads.append(same[0] if same else len(encoders) - 1)
    if len(encoders) == 1:
        encoder, spans = encoders[0], None
    else:
        encoder = EncoderSet(encoders)
        spans = [encoder.spans[i] for i in reads]
    decoder = EnsembleDecoder([m.captioner.decoder for m in members], weights, spans)
    first.captioner = EncoderDecoder(encoder, decoder).train(False)
    return first


def _same_encoder(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """The same features from the same images: the same backbone, grid options and weights."""
    if a.name != b.name or getattr(a, "output_options", {}) != getattr(b, "output_options", {}):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
