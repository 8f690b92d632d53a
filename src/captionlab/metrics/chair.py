"""CHAIR, object hallucination in captions (Rohrbach, Hendricks et al., EMNLP 2018).

A caption's object mentions are found with a list of categories and their synonyms (longest
phrase first, plural words singularised); a mention of a category the image does not contain is a
hallucination.
- CHAIR-i: hallucinated mentions / all object mentions, over all captions.
- CHAIR-s: captions with at least one hallucinated mention / all captions.
Also reported: the mentions per caption and object recall (the share of the images' objects that
their captions name). Lower CHAIR is better.

The data sources supply the categories and each image's objects: shapes from the generator's own
labels (exact), COCO from its instance annotations with the paper's synonym list
(`metrics/data/coco_synonyms.txt`, from the authors' repository) and its rules for phrases that
name no object ("baby bird" is a bird, not a person; "toilet seat" is a toilet).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from captionlab.text import tokenize

COCO_SYNONYMS = Path(__file__).resolve().parent / "data" / "coco_synonyms.txt"
MAX_PHRASE = 3  # words

# the paper's rules for COCO: qualifiers that would otherwise fire for "person"
_ANIMALS = (
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "animal",
    "cub",
)
COCO_RULES = {
    **{f"{age} {animal}": animal for age in ("baby", "adult") for animal in _ANIMALS},
    "passenger jet": "jet",
    "passenger train": "train",
    "toilet seat": "toilet",
    "bow tie": "tie",
}

_IRREGULAR = {
    "men": "man",
    "women": "woman",
    "children": "child",
    "mice": "mouse",
    "geese": "goose",
    "oxen": "ox",
    "knives": "knife",
    "feet": "foot",
    "teeth": "tooth",
    "people": "people",
}


def singular(word: str) -> str:
    """A plural noun's singular by the common English rules (enough for object names)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


class ObjectWords:
    """Phrases that name object categories: {category: [phrases]} (the category's own name
    included), and rewrites of phrases before lookup (`rules`: phrase -> phrase)."""

    def __init__(self, synonyms: Mapping[str, Iterable[str]], rules: Mapping[str, str] | None = None):
        self.category: dict[tuple[str, ...], str] = {}
        for category, phrases in synonyms.items():
            for phrase in (category, *phrases):
                self.category[tuple(phrase.lower().split())] = category
        self.rules = {tuple(k.split()): tuple(v.split()) for k, v in (rules or {}).items()}

    @classmethod
    def coco(cls) -> ObjectWords:
        lines = [
            line
            for line in COCO_SYNONYMS.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        synonyms = {}
        for line in lines:
            names = [name.strip() for name in line.split(",") if name.strip()]
            synonyms[names[0]] = names[1:]
        return cls(synonyms, COCO_RULES)

    def mentions(self, caption: str) -> list[str]:
        """The categories a caption names, in order (each word belongs to one mention at most)."""
        words = tokenize(caption)
        found, i = [], 0
        while i < len(words):
            for size in range(min(MAX_PHRASE, len(words) - i), 0, -1):
                category = self._lookup(tuple(words[i : i + size]))
                if category is not None:
                    found.append(category)
                    i += size
                    break
            else:
                i += 1
        return found

    def _lookup(self, phrase: tuple[str, ...]) -> str | None:
        """The category of a phrase as written ("skis", "scissors") or with its last word
        singularised ("two dogs")."""
        for form in (phrase, (*phrase[:-1], singular(phrase[-1]))):
            form = self.rules.get(form, form)
            if form in self.category:
                return self.category[form]
        return None


def chair(
    predictions: Mapping[object, str], objects: Mapping[object, set[str]], words: ObjectWords
) -> dict[str, float]:
    """CHAIR-i, CHAIR-s, mentions per caption and object recall over the images in `objects`."""
    mentions = hallucinated = captions_hallucinating = named = present = 0
    scored = [image_id for image_id in predictions if image_id in objects]
    for image_id in scored:
        found = words.mentions(predictions[image_id])
        wrong = [category for category in found if category not in objects[image_id]]
        mentions += len(found)
        hallucinated += len(wrong)
        captions_hallucinating += bool(wrong)
        named += len(set(found) & objects[image_id])
        present += len(objects[image_id])
    count = max(len(scored), 1)
    return {
        "chair_i": hallucinated / mentions if mentions else 0.0,
        "chair_s": captions_hallucinating / count,
        "object_mentions": mentions / count,
        "object_recall": named / present if present else 0.0,
    }
