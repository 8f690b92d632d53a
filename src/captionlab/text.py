"""Text: the special tokens and their ids, the tokenizer, and the word vocabulary (built from the
training captions only, saved with every run and checkpoint). A leaf: the search strategies and
decoders get the special ids as values (`Vocabulary.special`, `SpecialIds`), not by import."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from captionlab.utils.io import read_text, write_text

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)


@dataclass(frozen=True)
class SpecialIds:
    """The ids of `<pad> <bos> <eos> <unk>` in a vocabulary."""

    pad: int = PAD_ID
    bos: int = BOS_ID
    eos: int = EOS_ID
    unk: int = UNK_ID


_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def tokenize(caption: str) -> list[str]:
    """Lower-case, strip punctuation (apostrophes inside words survive), split on spaces."""
    text = _NON_WORD.sub(" ", caption.lower())
    return [w.strip("'") for w in text.split() if w.strip("'")]


class Vocabulary:
    """Maps words to ids; ids 0-3 are always `<pad> <bos> <eos> <unk>`."""

    def __init__(self, words: Sequence[str]):
        if tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a vocabulary must start with {SPECIALS}")
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def special(self) -> SpecialIds:
        return SpecialIds(*(self.index[token] for token in SPECIALS))

    @classmethod
    def build(cls, captions: Iterable[str], min_count: int = 1) -> Vocabulary:
        counts = Counter(w for c in captions for w in tokenize(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str, max_len: int | None = None) -> list[int]:
        """`<bos> w1 .. wn <eos>`, with at most `max_len` words."""
        ids = [self.index.get(w, UNK_ID) for w in tokenize(caption)]
        if max_len is not None:
            ids = ids[:max_len]
        return [BOS_ID, *ids, EOS_ID]

    def decode(self, ids: Iterable[int]) -> str:
        """Words up to the first `<eos>`, special tokens dropped."""
        words = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i >= len(SPECIALS):
                words.append(self.words[i])
        return " ".join(words)

    def coverage(self, words: Iterable[str]) -> float:
        """The share of these (tokenized) words that this vocabulary knows (1.0 for none)."""
        words = list(words)
        return sum(w in self.index for w in words) / len(words) if words else 1.0

    def save(self, path: Path) -> None:
        write_text(path, json.dumps(self.words, indent=0))

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        return cls(json.loads(read_text(path, "vocabulary file")))
