"""The contracts at the seams between the parts, in one leaf module that every layer may import:
what a data source gives, what an encoder gives a decoder, what a decoder state and a search
output are, and what a batch holds. The parts implement these; none of them imports another
part to learn its shape."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

import torch

if TYPE_CHECKING:
    from captionlab.text import SpecialIds


@dataclass(frozen=True)
class CaptionRecord:
    """One image and its raw reference captions.

    `image_id` is COCO's integer id for COCO data and the file name relative to the image folder
    otherwise; predictions and references are keyed by it. `attributes`: (name, value) labels a
    dataset knows about the image (the shapes generator's objects), for `model=template`.
    """

    image_path: Path
    image_id: int | str
    split: str
    captions: tuple[str, ...] = field(default_factory=tuple)
    attributes: tuple[tuple[str, str], ...] = ()


@runtime_checkable
class DataSource(Protocol):
    """A dataset format (`data.source`): its records per split (train/val/test), and the bad items
    it skipped or noted while reading them (`problems.summary()`)."""

    problems: Any

    def load(self) -> dict[str, list[CaptionRecord]]: ...


@dataclass
class EncoderOutput:
    """`pooled` [B, D] and `grid` [B, N, D] (CNN feature map flattened, ViT patch tokens, or a
    set of detector regions). `mask` [B, N] (bool, True: a real region) when images have different
    numbers of regions and the grid is padded; None when every region is real."""

    pooled: torch.Tensor
    grid: torch.Tensor
    mask: torch.Tensor | None = None

    def index_select(self, index: torch.Tensor) -> EncoderOutput:
        return EncoderOutput(
            self.pooled.index_select(0, index),
            self.grid.index_select(0, index),
            None if self.mask is None else self.mask.index_select(0, index),
        )

    def channels(self, start: int, stop: int) -> EncoderOutput:
        """Channels [start, stop) of the pooled vector and of every region: one encoder's share of
        features set side by side (an ensemble whose members read different encoders)."""
        return EncoderOutput(self.pooled[..., start:stop], self.grid[..., start:stop], self.mask)


# A decoder state: batch-first tensors. Entries named `memory*` depend only on the image.
State = dict[str, torch.Tensor]


class Batch(TypedDict, total=False):
    """What the data loaders yield: `image` [B, 3, H, W] or cached `pooled`/`grid` features
    (`grid_mask` [B, N], True for real regions, when region counts differ and the grid is padded),
    `index` [B] (row in the split), `tokens` [B, K, T] and `mirrored` [B] (training: True where the
    item is the mirror image, data.hflip), and `unreadable` (images of the batch that did not
    decode, set aside by the collate function)."""

    image: torch.Tensor
    pooled: torch.Tensor
    grid: torch.Tensor
    grid_mask: torch.Tensor
    index: torch.Tensor
    tokens: torch.Tensor
    mirrored: torch.Tensor
    unreadable: list[dict[str, Any]]


@dataclass
class SearchOutput:
    """`sequences` [B, R, L]: word ids then `<eos>` then `<pad>` (no `<bos>`), R returned per image,
    best first; `scores` [B, R]: sum of log-probabilities; `attentions` [B, R, L, N] or None;
    `normalized_scores` [B, R]: the score beam search ranks by (None for other strategies)."""

    sequences: torch.Tensor
    scores: torch.Tensor
    attentions: torch.Tensor | None = None
    normalized_scores: torch.Tensor | None = None

    def best(self) -> torch.Tensor:
        return self.sequences[:, 0]


@runtime_checkable
class Decoder(Protocol):
    """Teacher forcing and incremental decoding (see models/decoders/base.py)."""

    vocab_size: int

    def __call__(self, memory: EncoderOutput, tokens: torch.Tensor) -> torch.Tensor: ...

    def init_state(self, memory: EncoderOutput) -> State: ...

    def step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor | None]: ...

    def reorder_state(self, state: State, index: torch.Tensor) -> State: ...

    def reorder_beams(self, state: State, index: torch.Tensor) -> State: ...


@runtime_checkable
class Search(Protocol):
    """A search strategy: decodes a batch of images with a decoder."""

    max_new_tokens: int
    num_return_sequences: int
    special: SpecialIds

    def __call__(self, decoder: Decoder, memory: EncoderOutput) -> SearchOutput: ...

    def config(self) -> dict[str, Any]: ...


@runtime_checkable
class Reranker(Protocol):
    """Reorders each image's returned captions (`rerank=...`, e.g. systems/mbr.py), the chosen first."""

    # whether prepare() needs the training captions (caption.py reads them only then)
    needs_training_captions: bool

    def prepare(self, training_references: Sequence[Sequence[str]]) -> None: ...

    def check(self, search: Search) -> None: ...

    # `output` is what `search` made of `memory`, the batch's features encoded once; a reranker's
    # own searches (MBR's samples) run `decoder` on the same memory
    def __call__(
        self,
        decoder: Decoder,
        memory: EncoderOutput,
        search: Search,
        output: SearchOutput,
        decode: Callable[[Sequence[int]], str],
    ) -> SearchOutput: ...
