"""Each decoding rule alone, the list a search config builds, and a user's own rule."""

import pytest
import torch

from captionlab.errors import OptionError, UserError
from captionlab.registry import register
from captionlab.search import GreedySearch, SampleSearch
from captionlab.search.processors import (
    BlockRepeatedWords,
    MinNewTokens,
    NoRepeatNGram,
    SuppressTokens,
    Temperature,
    TopK,
    TopP,
)

INF = float("-inf")


def _scores(rows=2, vocab=8):
    torch.manual_seed(0)
    return torch.log_softmax(torch.randn(rows, vocab), dim=-1)


def _banned(scores):
    return [torch.isinf(row).nonzero().flatten().tolist() for row in scores]


def test_suppress_tokens():
    scores = _scores()
    out = SuppressTokens([0, 3])(torch.empty(2, 0, dtype=torch.long), scores)
    assert _banned(out) == [[0, 3], [0, 3]] and torch.equal(out[:, [1, 2, 4]], scores[:, [1, 2, 4]])
    assert torch.equal(SuppressTokens([])(torch.empty(2, 0, dtype=torch.long), scores), scores)


def test_min_new_tokens_bans_eos_until_enough_words():
    rule, scores = MinNewTokens(2, eos_id=2), _scores()
    assert _banned(rule(torch.tensor([[5], [6]]), scores)) == [[2], [2]]
    assert _banned(rule(torch.tensor([[5, 6], [6, 7]]), scores)) == [[], []]


def test_no_repeat_ngram():
    history = torch.tensor([[5, 6, 5], [5, 6, 7]])
    assert _banned(NoRepeatNGram(2)(history, _scores())) == [[6], []]
    assert _banned(NoRepeatNGram(1)(history, _scores())) == [[5, 6], [5, 6, 7]]


def test_block_repeated_words():
    assert _banned(BlockRepeatedWords()(torch.tensor([[4, 5], [7, 1]]), _scores())) == [[5], [1]]
    assert _banned(BlockRepeatedWords()(torch.empty(2, 0, dtype=torch.long), _scores())) == [[], []]


def test_sampling_warpers():
    history, scores = torch.empty(2, 0, dtype=torch.long), _scores()
    assert torch.allclose(Temperature(0.5)(history, scores), scores * 2)
    kept = [(~torch.isinf(row)).sum().item() for row in TopK(3)(history, scores)]
    assert kept == [3, 3] and torch.equal(TopK(8)(history, scores), scores)
    probs = scores.exp()
    for row, out in zip(probs, TopP(0.5)(history, scores)):
        order = row.argsort(descending=True)
        mass_before = row[order].cumsum(0) - row[order]
        assert (~torch.isinf(out[order])).tolist() == (mass_before < 0.5).tolist()


@pytest.mark.parametrize(
    "make,option",
    [
        (lambda: MinNewTokens(-1, 2), "search.min_new_tokens"),
        (lambda: NoRepeatNGram(0), "search.no_repeat_ngram_size"),
        (lambda: Temperature(0.0), "search.temperature"),
        (lambda: TopK(0), "search.top_k"),
        (lambda: TopP(1.5), "search.top_p"),
    ],
)
def test_each_rule_checks_its_setting(make, option):
    with pytest.raises(OptionError, match=option):
        make()
    assert issubclass(OptionError, UserError) and issubclass(OptionError, ValueError)


def test_the_config_keys_build_the_rule_list():
    search = GreedySearch(
        min_new_tokens=2, no_repeat_ngram_size=3, block_repeated_words=True, suppress_unk=False
    )
    assert [type(p).__name__ for p in search.processors] == [
        "SuppressTokens",
        "MinNewTokens",
        "NoRepeatNGram",
        "BlockRepeatedWords",
    ]
    assert search.processors[0].token_ids == [search.special.pad, search.special.bos]
    assert [type(p).__name__ for p in GreedySearch().processors] == ["SuppressTokens"]
    assert [type(w).__name__ for w in SampleSearch(temperature=0.7, top_k=5, top_p=0.9)._warpers] == [
        "Temperature",
        "TopK",
        "TopP",
    ]


@register("processor", "ban_word")
class BanWord:
    """A user's rule: one word never appears."""

    def __init__(self, word_id: int):
        self.word_id = word_id

    def __call__(self, history, scores):
        return scores.index_fill(1, torch.tensor([self.word_id]), INF)


def test_a_users_registered_rule_joins_the_list():
    target = "processor/ban_word"
    search = GreedySearch(extra_processors=[{"_target_": target, "word_id": 6}])
    assert type(search.processors[-1]).__name__ == "BanWord"
    assert 6 in _banned(search.constrain(_scores(), torch.empty(2, 0, dtype=torch.long)))[0]
    assert search.config()["extra_processors"] == [{"_target_": target, "word_id": 6}]
    # by class path too (what a user's own config may say)
    path = f"{BanWord.__module__}.{BanWord.__qualname__}"
    assert type(GreedySearch(extra_processors=[{"_target_": path, "word_id": 6}]).processors[-1]) is BanWord
    with pytest.raises(UserError, match="not a registered component"):
        GreedySearch(extra_processors=[{"_target_": "os.system", "command": "true"}])
