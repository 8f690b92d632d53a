"""`model=template`: fill a sentence template from what classifiers see in the image.

Slots are classifier heads on the encoder's pooled vector:
- `slots: imagenet` — one slot, `{object}`: the encoder's pretrained ImageNet classifier, its
  classes mapped to words (dog breeds -> "dog", cats -> "cat", birds -> "bird", the rest -> the
  class's first name). Nothing is trained.
- `slots: {name: [values]}` or `{name: {value: words}}` — the dataset's attribute labels (the
  shapes generator's count, shape, colour and size of the described object): linear heads trained
  with cross-entropy on the training images.
Its point is a floor that any learned decoder must clear, on the same encoder and scoring path.
"""

from __future__ import annotations

import functools
import string
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from captionlab.errors import UserError
from captionlab.models.encoder_decoder import encode_batch
from captionlab.models.encoders import TimmEncoder, imagenet_classifier
from captionlab.registry import build, register
from captionlab.search.base import SearchStrategy
from captionlab.systems.base import BaseSystem
from captionlab.systems.output import texts_to_output
from captionlab.text import tokenize
from captionlab.types import Batch, SearchOutput

# coarse words for ImageNet's fine classes (index ranges of the standard 1000-class order)
IMAGENET_GROUPS = {
    "dog": range(151, 269),
    "cat": range(281, 286),
    "bird": [*range(7, 25), *range(80, 101), *range(127, 147)],
}


@functools.lru_cache(maxsize=1)
def imagenet_words() -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    words = [
        " ".join(tokenize(info.index_to_description(i).split(",")[0].replace("_", " ")))
        for i in range(info.num_classes())
    ]
    for word, indices in IMAGENET_GROUPS.items():
        for i in indices:
            words[i] = word
    return tuple(words)


def slot_table(slots: Any) -> dict[str, dict[str, str]]:
    """{slot: {label value: words}} from the config (`imagenet`, or lists / mappings per slot)."""
    if slots == "imagenet":
        return {"object": {str(i): word for i, word in enumerate(imagenet_words())}}
    if not isinstance(slots, dict) or not slots:
        raise UserError(f"model.slots={slots!r}: use imagenet, or a mapping of slot names to their values")
    table = {}
    for name, values in slots.items():
        table[str(name)] = (
            {str(k): str(v) for k, v in values.items()}
            if isinstance(values, dict)
            else {str(v): str(v) for v in values}
        )
    return table


class TemplateCaptioner(nn.Module):
    def __init__(
        self,
        encoder: TimmEncoder,
        vocab: Any,
        template: str,
        slots: dict[str, dict[str, str]],
        fixed_heads: dict[str, nn.Linear] | None = None,
    ):
        super().__init__()
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
        if fields - set(slots) or not fields:
            raise UserError(
                f"model.template={template!r} must use only (and at least one of) the slots "
                f"{{{'}, {'.join(slots)}}}"
            )
        self.encoder, self.vocab, self.template = encoder, vocab, template
        self.values = {name: list(table) for name, table in slots.items()}
        self.words = {name: list(table.values()) for name, table in slots.items()}
        fixed = fixed_heads or {}
        self.heads = nn.ModuleDict(
            {
                name: fixed.get(name) or nn.Linear(encoder.feature_dim, len(table))
                for name, table in slots.items()
            }
        )
        for head in fixed.values():
            head.requires_grad_(False)

    def logits(self, batch: Batch) -> dict[str, torch.Tensor]:
        pooled = encode_batch(self.encoder, batch).pooled.float()
        return {name: head(pooled) for name, head in self.heads.items()}

    @torch.no_grad()
    def generate(self, batch: Batch, search: SearchStrategy) -> SearchOutput:
        """One caption per image: each slot's most likely word; score = the sum of their log-probabilities."""
        logprobs = {name: F.log_softmax(value, dim=-1) for name, value in self.logits(batch).items()}
        best = {name: value.max(dim=-1) for name, value in logprobs.items()}
        size = next(iter(logprobs.values())).shape[0]
        options = []
        for b in range(size):
            filled = {name: self.words[name][int(pick.indices[b])] for name, pick in best.items()}
            options.append([(self.template.format(**filled), float(sum(p.values[b] for p in best.values())))])
        return texts_to_output(self.vocab, options, next(iter(logprobs.values())).device)


@register("model", "template")
class TemplateSystem(BaseSystem):
    """Trains its attribute heads with cross-entropy (frozen encoder); an ImageNet slot trains nothing."""

    default_stage = "template"

    def __init__(
        self,
        config: dict[str, Any],
        vocab: list[str],
        preprocessing: dict[str, Any] | None = None,
        stage: str | None = None,
    ):
        model = config["model"]
        table = slot_table(model.get("slots"))
        # every word a filled template can contain must be in the vocabulary, or decoding would drop it
        words = {w for w in tokenize(model["template"])} | {
            w for t in table.values() for v in t.values() for w in tokenize(v)
        }
        vocab = list(vocab) + sorted(words - set(vocab))
        super().__init__(config, vocab, preprocessing, stage)

    def build_captioner(self, config: dict[str, Any]) -> TemplateCaptioner:
        model, encoder_config = config["model"], {**config["encoder"], "freeze": "all"}
        table = slot_table(model.get("slots"))
        self.imagenet_weights = model.get("slots") == "imagenet" and bool(
            encoder_config.get("pretrained") or encoder_config.get("checkpoint")
        )
        encoder = build(encoder_config, "encoder")
        fixed = {}
        if model.get("slots") == "imagenet":
            # without the encoder's weights (a checkpoint being loaded), the head's come from the checkpoint
            fixed["object"] = (
                imagenet_classifier(encoder_config["name"], True, encoder_config.get("checkpoint"))
                if self.imagenet_weights
                else nn.Linear(encoder.feature_dim, len(table["object"]))
            )
        return TemplateCaptioner(encoder, self.vocab, model["template"], table, fixed)

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.captioner.heads.parameters())

    def on_fit_start(self) -> None:
        if self.config["model"].get("slots") == "imagenet" and not self.imagenet_weights:
            imagenet_classifier(
                self.config["encoder"]["name"], False, None
            )  # raises: says which weights to give
        if not self.trainable:
            return
        heads = self.captioner.values
        rows = []
        for record in self.trainer.datamodule.split("train"):
            labels = dict(record.attributes)
            try:
                rows.append([heads[name].index(labels[name]) for name in heads])
            except (KeyError, ValueError):
                raise UserError(
                    f"model=template: training image {record.image_id} has attributes {labels or 'none'}, "
                    f"but the slots need one of the configured values for each of {', '.join(heads)}; "
                    "use model.slots=imagenet on datasets without attribute labels"
                ) from None
        self.register_buffer("labels", torch.tensor(rows, device=self.device), persistent=False)

    def training_objective(self, batch: Batch) -> dict[str, torch.Tensor]:
        if not self.trainable:
            return {}
        targets = self.labels[batch["index"]]
        logits = self.captioner.logits(batch)
        losses = {
            name: F.cross_entropy(value, targets[:, i]) for i, (name, value) in enumerate(logits.items())
        }
        accuracy = torch.stack(
            [(value.argmax(-1) == targets[:, i]).float().mean() for i, value in enumerate(logits.values())]
        ).mean()
        return {"loss": sum(losses.values()), "slot_accuracy": accuracy}

    def on_train_epoch_end(self) -> None:
        if not self.trainable:
            self.trainer.should_stop = True  # nothing to learn: one pass (a checkpoint is still written)

    def configure_optimizers(self) -> Any:
        return super().configure_optimizers() if self.trainable else None
