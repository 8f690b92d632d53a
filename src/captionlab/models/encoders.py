"""Image encoders: any timm backbone, giving a pooled vector and a grid of region features."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config
from torch import nn

from captionlab.errors import UserError
from captionlab.registry import register


@dataclass
class EncoderOutput:
    """`pooled` [B, D] and `grid` [B, N, D] (CNN feature map flattened, or ViT patch tokens)."""

    pooled: torch.Tensor
    grid: torch.Tensor

    def index_select(self, index: torch.Tensor) -> "EncoderOutput":
        return EncoderOutput(self.pooled.index_select(0, index), self.grid.index_select(0, index))


@register
class TimmEncoder(nn.Module):
    """Wraps `timm.create_model(name)`.

    `freeze`: "all" (no gradients, BatchNorm statistics frozen), "none", or an integer N: only the
    last N parameter groups of timm's coarse grouping (stages) are trained.
    `input_size`/`crop` override timm's data config; the result is `self.preprocessing`, saved with
    every checkpoint. `grid_size` pools the grid to K x K regions (Show, Attend and Tell used 14).
    `zero_features` is an ablation: the decoder sees zeros (a blind language model).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = False,
        checkpoint: str | None = None,
        freeze: str | int = "none",
        lr_mult: float = 1.0,
        input_size: int | None = None,
        crop: bool = True,
        grid_size: int | None = None,
        zero_features: bool = False,
    ):
        super().__init__()
        self.name, self.lr_mult, self.zero_features, self.grid_size = name, lr_mult, zero_features, grid_size
        self.model = _create(name, pretrained, checkpoint, input_size)
        self.feature_dim: int = self.model.num_features
        self.num_prefix_tokens: int = getattr(self.model, "num_prefix_tokens", 0)
        self.preprocessing = _preprocessing(self.model, input_size, crop)
        self.freeze = freeze
        self._apply_freeze(freeze)

    def _apply_freeze(self, freeze: str | int) -> None:
        if freeze == "none":
            return
        if freeze == "all":
            self.model.requires_grad_(False)
            return
        if isinstance(freeze, int) and freeze >= 0:
            groups = _parameter_groups(self.model)
            self.model.requires_grad_(False)
            for names in groups[len(groups) - freeze:] if freeze else []:
                for name in names:
                    self.model.get_parameter(name).requires_grad_(True)
            return
        raise UserError(f"encoder.freeze={freeze!r}: use all, none, or the number of last stages to train")

    @property
    def frozen(self) -> bool:
        return self.freeze == "all"

    def train(self, mode: bool = True) -> "TimmEncoder":
        # A frozen encoder keeps BatchNorm in eval mode: its running statistics must not drift.
        super().train(mode and not self.frozen)
        return self

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            features = self.model.forward_features(images)
            pooled = self.model.forward_head(features, pre_logits=True)
        if features.ndim == 3:  # ViT tokens -> square map of patches
            tokens = features[:, self.num_prefix_tokens:]
            side = math.isqrt(tokens.shape[1])
            features = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
        if self.grid_size:
            features = nn.functional.adaptive_avg_pool2d(features, self.grid_size)
        grid = features.flatten(2).transpose(1, 2)
        if self.zero_features:
            pooled, grid = torch.zeros_like(pooled), torch.zeros_like(grid)
        return EncoderOutput(pooled, grid)


def imagenet_classifier(name: str, pretrained: bool, checkpoint: str | None) -> nn.Linear:
    """The pretrained ImageNet classifier of timm model `name` (it maps the pooled vector, as
    TimmEncoder gives it, to class logits); loaded like the encoder's weights."""
    if not (pretrained or checkpoint):
        raise UserError(f"the ImageNet classes of {name} need its pretrained weights: "
                        "pass encoder.checkpoint=<local weights file> (or encoder.pretrained=true online)")
    head = _create(name, pretrained, checkpoint, None, keep_classifier=True).get_classifier()
    if not isinstance(head, nn.Linear):
        raise UserError(f"{name}'s classifier is not a single linear layer on the pooled vector; choose another encoder")
    return head


def _create(name: str, pretrained: bool, checkpoint: str | None, input_size: int | None,
            keep_classifier: bool = False) -> nn.Module:
    if not timm.is_model(name):
        raise UserError(f"encoder.name={name}: timm has no such model; see timm.list_models()")
    kwargs: dict[str, Any] = {} if keep_classifier else {"num_classes": 0}
    if input_size and getattr(timm.models.get_pretrained_cfg(name), "fixed_input_size", False):
        kwargs["img_size"] = int(input_size)  # ViTs: position embeddings for this size
    if checkpoint:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise UserError(f"encoder.checkpoint={checkpoint}: no such file; give a local weights file")
        if path.suffix == ".ckpt" and not keep_classifier:  # a captionlab checkpoint: its trained encoder
            model = timm.create_model(name, pretrained=False, **kwargs)
            model.load_state_dict(_captionlab_encoder_weights(path, name))
            return model
        overlay = {"file": str(path)}
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    if pretrained and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UserError(f"encoder.pretrained=true needs the model hub, but HF_HUB_OFFLINE=1; "
                        f"pass encoder.checkpoint=<local weights file> for {name}")
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as err:
        if not pretrained:
            raise
        raise UserError(f"cannot download pretrained weights for {name} ({type(err).__name__}); "
                        "pass encoder.checkpoint=<local weights file> or go online") from None


def _captionlab_encoder_weights(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The encoder weights inside a captionlab checkpoint (e.g. to index a trained encoder's features)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        found = checkpoint["hyper_parameters"]["config"]["encoder"]["name"]
        state = checkpoint["state_dict"]
    except Exception as err:  # unpickling, a foreign file: one line, not a traceback
        raise UserError(f"encoder.checkpoint={path}: not a readable captionlab checkpoint ({type(err).__name__})") from None
    if found != name:
        raise UserError(f"encoder.checkpoint={path} holds a {found} encoder, not {name}: set encoder.name={found}")
    prefix = "captioner.encoder.model."
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _preprocessing(model: nn.Module, input_size: int | None, crop: bool) -> dict[str, Any]:
    config = resolve_model_data_config(model)
    if input_size is not None:
        config["input_size"] = (3, int(input_size), int(input_size))
    if not crop:
        config["crop_pct"], config["crop_mode"] = 1.0, "squash"
    return {
        "input_size": list(config["input_size"]),
        "interpolation": config["interpolation"],
        "mean": [float(x) for x in config["mean"]],
        "std": [float(x) for x in config["std"]],
        "crop_pct": float(config["crop_pct"]),
        "crop_mode": config.get("crop_mode", "center"),
    }


def _parameter_groups(model: nn.Module) -> list[list[str]]:
    """Parameter names per stage, input side first (timm's coarse group_matcher)."""
    from timm.models import group_parameters

    grouped = group_parameters(model, model.group_matcher(coarse=True))
    return [list(names) for _, names in sorted(grouped.items())]
