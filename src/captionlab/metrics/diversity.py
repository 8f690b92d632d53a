"""Cheap diversity figures that captioning papers report next to the accuracy metrics."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from captionlab.text import EOS_ID, tokenize


def diversity(predictions: Mapping[object, str], training_captions: Iterable[str]) -> dict[str, float]:
    """Distinct words used over all captions, the share of captions not found verbatim (after
    tokenising) among the training captions ("novel"), the mean caption length in words, the
    share of captions that repeat a word and the share that loop over a phrase."""
    seen = {" ".join(tokenize(c)) for c in training_captions}
    captions = [tokenize(c) for c in predictions.values()]
    if not captions:
        return {
            "distinct_words": 0,
            "novel_captions": 0.0,
            "mean_length": 0.0,
            "repeat_rate": 0.0,
            "loop_rate": 0.0,
        }
    return {
        "distinct_words": len({w for words in captions for w in words}),
        "novel_captions": sum(" ".join(words) not in seen for words in captions) / len(captions),
        "mean_length": sum(len(words) for words in captions) / len(captions),
        "repeat_rate": sum(map(repeats_a_word, captions)) / len(captions),
        "loop_rate": sum(map(repeats_a_phrase, captions)) / len(captions),
    }


def repeats_a_word(words: Sequence[str]) -> bool:
    """The same word twice in a row ("a man in a blue blue shirt"): how a collapsing captioner fails."""
    return any(a == b for a, b in zip(words, words[1:]))


def repeats_a_phrase(words: Sequence[str], n: int = 3) -> bool:
    """A word n-gram twice ("a man in a red shirt and a woman in a red shirt and ..."): how greedy
    decoding loops; `search.no_repeat_ngram_size=3` forbids it."""
    grams = list(zip(*(words[i:] for i in range(n))))
    return len(set(grams)) < len(grams)


def repeat_rate(captions: Iterable[str]) -> float:
    """The share of captions that repeat a word (`repeats_a_word`)."""
    flags = [repeats_a_word(tokenize(c)) for c in captions]
    return sum(flags) / len(flags) if flags else 0.0


def loop_rate(captions: Iterable[str]) -> float:
    """The share of captions that repeat a word trigram (`repeats_a_phrase`)."""
    flags = [repeats_a_phrase(tokenize(c)) for c in captions]
    return sum(flags) / len(flags) if flags else 0.0


def limit_rate(sequences: Iterable[Sequence[int]], max_new_tokens: int) -> float:
    """The share of generated token sequences with no `<eos>` within `max_new_tokens`: captions
    cut at the length limit instead of ended by the model."""
    flags = [EOS_ID not in list(tokens)[:max_new_tokens] for tokens in sequences]
    return sum(flags) / len(flags) if flags else 0.0
