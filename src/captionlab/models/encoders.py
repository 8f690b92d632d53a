"""Image encoders: any timm backbone, giving a pooled vector and a grid of region features."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_model_data_config
from torch import nn

from captionlab.checkpoint_file import encoder_weights
from captionlab.errors import UserError
from captionlab.registry import register
from captionlab.types import EncoderOutput


@register("encoder", "timm")
class TimmEncoder(nn.Module):
    """Wraps `timm.create_model(name)`.

    `freeze`: "all" (no gradients, BatchNorm statistics frozen), "none", or an integer N: only the
    last N parameter groups of timm's coarse grouping (stages) are trained.
    `input_size`/`crop` override timm's data config; the result is `self.preprocessing`, saved with
    every checkpoint. `grid_size` pools the grid to K x K regions (Show, Attend and Tell used 14).
    `feature_stage` takes the grid from earlier stages (timm's `feature_info` index; "final": the
    backbone's output), one or a list concatenated along channels at the coarsest of their grids (or
    `grid_size`); the pooled vector is then the grid's mean. `zero_features` is an ablation: the
    decoder sees zeros (a blind language model).
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
        feature_stage: int | str | Sequence[int | str] | None = None,
        zero_features: bool = False,
    ):
        super().__init__()
        self.name, self.lr_mult, self.zero_features, self.grid_size = name, lr_mult, zero_features, grid_size
        self.model = _create(name, pretrained, checkpoint, input_size)
        self.stages = _stages(self.model, name, feature_stage)
        self.feature_dim: int = sum(
            self.model.num_features if stage == FINAL else self.model.feature_info[stage]["num_chs"]
            for stage in self.stages or [FINAL]
        )
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
            for names in groups[len(groups) - freeze :] if freeze else []:
                for name in names:
                    self.model.get_parameter(name).requires_grad_(True)
            return
        raise UserError(f"encoder.freeze={freeze!r}: use all, none, or the number of last stages to train")

    @property
    def frozen(self) -> bool:
        return self.freeze == "all"

    @property
    def output_options(self) -> dict[str, Any]:
        """The options that shape the features beyond the weights and the images (for the feature
        cache's key); only those set away from their default, so the default's key never changes."""
        options = {
            "feature_stage": self.stages,
            "grid_size": self.grid_size,
            "zero_features": self.zero_features,
        }
        return {key: value for key, value in options.items() if value}

    def train(self, mode: bool = True) -> TimmEncoder:
        # A frozen encoder keeps BatchNorm in eval mode: its running statistics must not drift.
        super().train(mode and not self.frozen)
        return self

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            if self.stages:
                features, pooled = self._stage_maps(images), None
            else:
                features = self.model.forward_features(images)
                pooled = self.model.forward_head(features, pre_logits=True)
                features = self._as_map(features)
        if self.grid_size:
            features = nn.functional.adaptive_avg_pool2d(features, self.grid_size)
        grid = features.flatten(2).transpose(1, 2)
        if pooled is None:
            pooled = grid.mean(1)
        if self.zero_features:
            pooled, grid = torch.zeros_like(pooled), torch.zeros_like(grid)
        return EncoderOutput(pooled, grid)

    def _as_map(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 3:  # ViT tokens -> square map of patches
            tokens = features[:, self.num_prefix_tokens :]
            side = math.isqrt(tokens.shape[1])
            features = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
        return features

    def _stage_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The chosen stages' maps, pooled to `grid_size` or the coarsest of them, concatenated along channels."""
        indices = sorted({stage for stage in self.stages if stage != FINAL})
        if FINAL in self.stages:
            final, intermediates = self.model.forward_intermediates(images, indices=indices)
            by_stage = {FINAL: self._as_map(final)}
        else:
            intermediates = self.model.forward_intermediates(
                images, indices=indices, intermediates_only=True, stop_early=True
            )
            by_stage = {}
        by_stage.update(zip(indices, intermediates, strict=True))
        maps = [by_stage[stage] for stage in self.stages]
        size = (self.grid_size, self.grid_size) if self.grid_size else min(tuple(m.shape[-2:]) for m in maps)
        return torch.cat([nn.functional.adaptive_avg_pool2d(m, size) for m in maps], dim=1)


FINAL = "final"


def check_same_regions(regions: Sequence[int]) -> None:
    """Features set side by side need one number of regions per image."""
    if len(set(regions)) > 1:
        raise UserError(
            f"the ensemble members' encoders give grids of {list(regions)} regions: members on different "
            "grids need the same number of regions (set encoder.grid_size alike when training)"
        )


class EncoderSet(nn.Module):
    """Several encoders on the same images, their features side by side along channels: the encoder
    of a test-time ensemble whose members were trained on different encoders or grids (e.g. one on
    the final grid, one with `encoder.feature_stage=[3,final]`). `spans[i]` is the channel range of
    part i, which the ensemble decoder hands to the members that read it. The parts share the
    preprocessing (one image pass) and the number of regions (so the attention maps align)."""

    def __init__(self, parts: Sequence[nn.Module]):
        super().__init__()
        self.parts = nn.ModuleList(parts)
        self.name = "+".join(part.name for part in parts)
        self.preprocessing = parts[0].preprocessing
        self.feature_dim: int = sum(part.feature_dim for part in parts)
        starts = [0]
        for part in parts:
            starts.append(starts[-1] + part.feature_dim)
        self.spans: list[tuple[int, int]] = list(zip(starts[:-1], starts[1:]))

    @property
    def frozen(self) -> bool:
        return all(part.frozen for part in self.parts)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        outputs = [part(images) for part in self.parts]
        check_same_regions([output.grid.shape[1] for output in outputs])
        return EncoderOutput(
            torch.cat([output.pooled for output in outputs], dim=-1),
            torch.cat([output.grid for output in outputs], dim=-1),
            outputs[0].mask,
        )


def _stages(model: nn.Module, name: str, feature_stage: Any) -> list[int | str] | None:
    """`feature_stage` as a list of stage indices and "final" (None: the backbone's output only)."""
    if feature_stage is None:
        return None
    many = isinstance(feature_stage, Sequence) and not isinstance(feature_stage, str)
    stages = list(feature_stage) if many else [feature_stage]
    count = len(getattr(model, "feature_info", []))
    if not hasattr(model, "forward_intermediates") or not count:
        raise UserError(f"encoder.feature_stage: timm's {name} gives no intermediate stages; leave it null")
    for stage in stages:
        if stage != FINAL and not (isinstance(stage, int) and 0 <= stage < count):
            raise UserError(
                f"encoder.feature_stage={feature_stage}: {stage!r} is not a stage of {name}; "
                f"use 0..{count - 1} (timm's feature_info, input side first) or {FINAL!r}"
            )
    if len(set(stages)) != len(stages):
        raise UserError(f"encoder.feature_stage={feature_stage}: a stage is listed twice")
    return None if stages == [FINAL] else stages


def imagenet_classifier(name: str, pretrained: bool, checkpoint: str | None) -> nn.Linear:
    """The pretrained ImageNet classifier of timm model `name` (it maps the pooled vector, as
    TimmEncoder gives it, to class logits); loaded like the encoder's weights."""
    if not (pretrained or checkpoint):
        raise UserError(
            f"the ImageNet classes of {name} need its pretrained weights: "
            "pass encoder.checkpoint=<local weights file> (or encoder.pretrained=true online)"
        )
    head = _create(name, pretrained, checkpoint, None, keep_classifier=True).get_classifier()
    if not isinstance(head, nn.Linear):
        raise UserError(
            f"{name}'s classifier is not a single linear layer on the pooled vector; choose another encoder"
        )
    return head


def _create(
    name: str, pretrained: bool, checkpoint: str | None, input_size: int | None, keep_classifier: bool = False
) -> nn.Module:
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
            weights = encoder_weights(path, name)
            check_backbone_weights(model, weights, name, path)
            model.load_state_dict(weights)
            return model
        check_backbone_weights(
            timm.create_model(name, pretrained=False, **kwargs), _read_weights(path), name, path
        )
        # timm loads the file itself: its filter functions adapt e.g. a ViT's position embeddings
        overlay = {"file": str(path)}
        return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
    if pretrained and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UserError(
            f"encoder.pretrained=true needs the model hub, but HF_HUB_OFFLINE=1; "
            f"pass encoder.checkpoint=<local weights file> for {name}"
        )
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError) as err:
        if not pretrained:
            raise
        raise UserError(
            f"cannot download pretrained weights for {name} ({type(err).__name__}); "
            "pass encoder.checkpoint=<local weights file> or go online"
        ) from None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A weights file's tensors (torch or safetensors; weights only), or one line saying it is none."""
    try:
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as err:  # unpickling, a text file, a truncated file: one line, not a traceback
        raise UserError(
            f"encoder.checkpoint={path}: not a readable weights file "
            f"({type(err).__name__}); give a timm/PyTorch state dict (.pth, .bin or .safetensors)"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(
            f"encoder.checkpoint={path}: not a state dict of tensors; give a timm/PyTorch weights file"
        )
    return state


# key names that tell the family of a weights file (for the message when it does not fit)
_FAMILY_KEYS = (
    ("patch_embed.proj.weight", "a ViT"),
    ("conv_stem.weight", "an EfficientNet/MobileNet (timm)"),
    ("layer1.0.conv1.weight", "a ResNet"),
    ("stem.0.weight", "a ConvNeXt"),
    ("features.0.weight", "a torchvision-style VGG/MobileNet"),
)


def check_backbone_weights(model: nn.Module, weights: dict[str, torch.Tensor], name: str, path: Path) -> None:
    """Every tensor of the backbone must be in the file with its shape (a classifier may be absent
    or extra; a position embedding may differ in size, timm resamples it). timm itself loads
    non-strictly when the class count differs, so without this a file of another architecture
    would leave the encoder random without an error."""
    expected = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    matched = sum(
        1
        for key, tensor in expected.items()
        if key in weights and (weights[key].shape == tensor.shape or "pos_embed" in key)
    )
    if matched == len(expected):
        return
    family = next((label for key, label in _FAMILY_KEYS if key in weights), "an unknown architecture")
    example = next(
        key
        for key in expected
        if key not in weights or (weights[key].shape != expected[key].shape and "pos_embed" not in key)
    )
    raise UserError(
        f"encoder.checkpoint={path} does not hold {name} weights: {matched} of {len(expected)} backbone "
        f"tensors match (e.g. {example!r} is missing or of another shape); the file holds "
        f"{len(weights)} tensors and looks like {family}; set encoder.name to its architecture"
    )


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
