"""Search strategies on every decoder: equalities that prove them correct.

Exact-equality tests use small float64 models so that floating-point near-ties cannot flip them.
"""

import copy
import itertools

import pytest
import torch

from captionlab.models.decoders import (
    AttentionLSTMDecoder,
    EnsembleDecoder,
    LSTMDecoder,
    TransformerDecoder,
    UpDownDecoder,
)
from captionlab.models.encoders import EncoderOutput
from captionlab.search import BeamSearch, GreedySearch, SampleSearch
from captionlab.search.processors import repeated_ngram_mask
from captionlab.text import BOS_ID, EOS_ID, PAD_ID, UNK_ID

FEATURES, GRID = 16, 5


def _decoder(name: str, vocab: int = 13):
    torch.manual_seed(1)
    build = {
        "lstm": lambda: LSTMDecoder(vocab, FEATURES, embed_dim=8, hidden_dim=10),
        "attention": lambda: AttentionLSTMDecoder(
            vocab, FEATURES, embed_dim=8, hidden_dim=10, attention_dim=6
        ),
        "updown": lambda: UpDownDecoder(vocab, FEATURES, embed_dim=8, hidden_dim=10, attention_dim=6),
        # members of different types, unequal weights
        "ensemble": lambda: EnsembleDecoder(
            [
                LSTMDecoder(vocab, FEATURES, embed_dim=8, hidden_dim=10),
                AttentionLSTMDecoder(vocab, FEATURES, embed_dim=8, hidden_dim=10, attention_dim=6),
                UpDownDecoder(vocab, FEATURES, embed_dim=8, hidden_dim=10, attention_dim=6),
            ],
            weights=[1.0, 2.0, 1.5],
        ),
        "transformer": lambda: TransformerDecoder(
            vocab, FEATURES, dim=16, num_layers=2, num_heads=4, ff_dim=32
        ),
    }[name]
    decoder = build().double().eval()
    with torch.no_grad():  # sharper distributions than a random init gives: real choices, few near-ties
        for part in getattr(decoder, "members", [decoder]):
            part.output.weight.mul_(6.0)
    return decoder


def _memory(batch: int = 6, seed: int = 0) -> EncoderOutput:
    torch.manual_seed(seed)
    return EncoderOutput(
        torch.randn(batch, FEATURES, dtype=torch.float64),
        torch.randn(batch, GRID, FEATURES, dtype=torch.float64),
    )


def _rows(memory: EncoderOutput, index: int) -> EncoderOutput:
    return EncoderOutput(memory.pooled[index : index + 1], memory.grid[index : index + 1])


def _trim(sequence: torch.Tensor) -> list[int]:
    return [int(t) for t in sequence if t != PAD_ID]


def _teacher_forced_score(decoder, memory: EncoderOutput, sequence: list[int]) -> float:
    """Sum of the log-probabilities of `sequence` (words, maybe `<eos>`) under teacher forcing."""
    tokens = torch.tensor([[BOS_ID] + sequence[:-1]])
    with torch.no_grad():
        logprobs = torch.log_softmax(decoder(memory, tokens), dim=-1)[0]
    return float(logprobs[torch.arange(len(sequence)), torch.tensor(sequence)].sum())


DECODERS = ["lstm", "attention", "updown", "transformer", "ensemble"]


@pytest.mark.parametrize("name", DECODERS)
def test_one_beam_without_length_penalty_is_greedy(name):
    decoder, memory = _decoder(name), _memory()
    greedy = GreedySearch(max_new_tokens=8)(decoder, memory)
    beam = BeamSearch(num_beams=1, length_penalty=0.0, max_new_tokens=8)(decoder, memory)
    assert [_trim(s) for s in beam.best()] == [_trim(s) for s in greedy.best()]
    torch.testing.assert_close(beam.scores, greedy.scores)


@pytest.mark.parametrize("name", DECODERS)
def test_sampling_with_top_k_1_is_greedy(name):
    decoder, memory = _decoder(name), _memory()
    greedy = GreedySearch(max_new_tokens=8)(decoder, memory)
    sampled = SampleSearch(top_k=1, max_new_tokens=8, seed=3)(decoder, memory)
    assert torch.equal(sampled.sequences, greedy.sequences)
    torch.testing.assert_close(sampled.scores, greedy.scores)


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_batched_beam_equals_one_image_at_a_time(name, length_penalty):
    decoder, memory = _decoder(name), _memory(batch=7)
    search = BeamSearch(num_beams=4, num_return_sequences=3, length_penalty=length_penalty, max_new_tokens=9)
    batched = search(decoder, memory)
    for i in range(7):
        alone = search(decoder, _rows(memory, i))
        assert [_trim(s) for s in batched.sequences[i]] == [_trim(s) for s in alone.sequences[0]]
        torch.testing.assert_close(batched.scores[i], alone.scores[0])
        torch.testing.assert_close(batched.normalized_scores[i], alone.normalized_scores[0])
        if name != "lstm":
            length = alone.attentions.shape[2]
            torch.testing.assert_close(batched.attentions[i, :, :length], alone.attentions[0])


def _exhaustive_best(decoder, memory, words: list[int], limit: int, length_penalty: float):
    """Every caption of up to `limit` tokens: words then `<eos>`, or `limit` words without it."""
    best = None
    for length in range(limit + 1):
        for body in itertools.product(words, repeat=length):
            sequence = list(body) + ([EOS_ID] if length < limit else [])
            if not sequence:
                continue
            score = _teacher_forced_score(decoder, memory, sequence)
            normalized = score / len(sequence) ** length_penalty
            if best is None or normalized > best[0]:
                best = (normalized, score, sequence)
    return best


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 2.0])
def test_enough_beams_find_the_exhaustive_optimum(name, length_penalty):
    """Vocabulary: 3 words + the 4 specials; captions of up to 3 tokens: 1 + 3 + 9 + 27 = 40."""
    decoder, limit = _decoder(name, vocab=7), 3
    words = [4, 5, 6]
    for image in range(3):
        memory = _rows(_memory(batch=3, seed=image), image)
        expected = _exhaustive_best(decoder, memory, words, limit, length_penalty)
        output = BeamSearch(num_beams=40, length_penalty=length_penalty, max_new_tokens=limit)(
            decoder, memory
        )
        assert _trim(output.best()[0]) == expected[2]
        assert float(output.scores[0, 0]) == pytest.approx(expected[1], abs=1e-9)
        assert float(output.normalized_scores[0, 0]) == pytest.approx(expected[0], abs=1e-9)


class _NeverStopsEarly(BeamSearch):
    def _cannot_improve(self, pool_normalized, beam_scores, step):
        return torch.zeros_like(beam_scores[:, 0], dtype=torch.bool)


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("length_penalty", [-0.5, 0.0, 1.0, 2.0])
def test_stopping_early_never_changes_the_result(name, length_penalty):
    """Likely early <eos> fills the pools at once; a strong length penalty can still prefer long captions."""
    decoder, memory = _with_bias(_decoder(name), EOS_ID, 4.0), _memory(batch=8)
    settings = dict(num_beams=3, num_return_sequences=3, length_penalty=length_penalty, max_new_tokens=10)
    early, full = BeamSearch(**settings)(decoder, memory), _NeverStopsEarly(**settings)(decoder, memory)
    assert [[_trim(s) for s in image] for image in early.sequences] == [
        [_trim(s) for s in image] for image in full.sequences
    ]
    torch.testing.assert_close(early.normalized_scores, full.normalized_scores)


@pytest.mark.parametrize("name", DECODERS)
def test_returned_hypotheses_are_ranked_and_scored_honestly(name):
    decoder, memory = _decoder(name), _memory(batch=3)
    output = BeamSearch(num_beams=5, num_return_sequences=5, length_penalty=1.0, max_new_tokens=8)(
        decoder, memory
    )
    assert output.sequences.shape[:2] == (3, 5)
    assert (output.normalized_scores[:, :-1] >= output.normalized_scores[:, 1:]).all()
    for i in range(3):
        texts = [tuple(_trim(s)) for s in output.sequences[i]]
        assert len(set(texts)) == 5
        for sequence, score, normalized in zip(texts, output.scores[i], output.normalized_scores[i]):
            assert float(score) == pytest.approx(
                _teacher_forced_score(decoder, _rows(memory, i), list(sequence)), abs=1e-9
            )
            assert float(normalized) == pytest.approx(float(score) / len(sequence), abs=1e-9)


@pytest.mark.parametrize("name", ["attention", "updown", "transformer", "ensemble"])
def test_beam_returns_the_attention_maps_of_its_sequences(name):
    decoder, memory = _decoder(name), _memory(batch=2)
    output = BeamSearch(num_beams=3, num_return_sequences=2, max_new_tokens=6)(decoder, memory)
    assert output.attentions.shape == (*output.sequences.shape, GRID)
    for i in range(2):
        for r in range(2):
            sequence = _trim(output.sequences[i, r])
            state, token = decoder.init_state(_rows(memory, i)), torch.tensor([BOS_ID])
            for t, word in enumerate(sequence):
                _, state, attention = decoder.step(token, state)
                torch.testing.assert_close(output.attentions[i, r, t], attention[0])
                token = torch.tensor([word])


STRATEGIES = {
    "greedy": lambda **rules: GreedySearch(**rules),
    "beam": lambda **rules: BeamSearch(num_beams=3, **rules),
    "sample": lambda **rules: SampleSearch(seed=0, **rules),
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", ["attention", "transformer"])
def test_an_ensemble_of_copies_decodes_like_the_model(strategy, name):
    decoder, memory = _decoder(name), _memory(batch=6)
    ensemble = EnsembleDecoder([decoder, copy.deepcopy(decoder), copy.deepcopy(decoder)], weights=[1, 2, 3])
    alone = STRATEGIES[strategy](max_new_tokens=9)(decoder, memory)
    together = STRATEGIES[strategy](max_new_tokens=9)(ensemble, memory)  # a fresh seeded generator
    assert torch.equal(together.sequences, alone.sequences)
    torch.testing.assert_close(together.scores, alone.scores)
    torch.testing.assert_close(together.attentions, alone.attentions)


def test_the_ensemble_averages_probabilities_with_its_weights():
    first, second = _decoder("lstm"), _decoder("attention")
    memory, tokens = _memory(batch=2), torch.tensor([[BOS_ID, 4, 5], [BOS_ID, 6, 4]])
    ensemble = EnsembleDecoder([first, second], weights=[3, 1])
    expected = 0.75 * torch.softmax(first(memory, tokens), -1) + 0.25 * torch.softmax(
        second(memory, tokens), -1
    )
    torch.testing.assert_close(ensemble(memory, tokens).exp(), expected)
    with pytest.raises(Exception, match="one positive weight per checkpoint"):
        EnsembleDecoder([first, second], weights=[1.0])


class _Biased(torch.nn.Module):
    """A decoder whose next-token scores get `value` added for `token` (every decoder, tied or not)."""

    def __init__(self, decoder, token: int, value: float):
        super().__init__()
        self.decoder, self.token, self.value = decoder, token, value

    def init_state(self, memory):
        return self.decoder.init_state(memory)

    def reorder_state(self, state, index):
        return self.decoder.reorder_state(state, index)

    def reorder_beams(self, state, index):
        return self.decoder.reorder_beams(state, index)

    def step(self, tokens, state):
        logprobs, state, attention = self.decoder.step(tokens, state)
        logprobs = logprobs.clone()
        logprobs[:, self.token] += self.value
        return torch.log_softmax(logprobs, dim=-1), state, attention


def _with_bias(decoder, token: int, value: float):
    return _Biased(decoder, token, value)


class _EndsAtVariedSteps(torch.nn.Module):
    """A decoder whose <eos> score grows each step, faster for later images of the batch: captions
    end at varied steps. The growth rides in the state, so it follows the rows when they move."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def init_state(self, memory):
        rows = memory.pooled.shape[0]
        ends = torch.stack([torch.linspace(0.5, 8.0, rows), torch.zeros(rows)], dim=1).to(memory.pooled)
        return {**self.decoder.init_state(memory), "ends": ends}

    def _split(self, state):
        return {k: v for k, v in state.items() if k != "ends"}, state["ends"]

    def reorder_state(self, state, index):
        inner, ends = self._split(state)
        return {**self.decoder.reorder_state(inner, index), "ends": ends.index_select(0, index)}

    def reorder_beams(self, state, index):
        inner, ends = self._split(state)
        return {**self.decoder.reorder_beams(inner, index), "ends": ends.index_select(0, index)}

    def step(self, tokens, state):
        inner, ends = self._split(state)
        logprobs, inner, attention = self.decoder.step(tokens, inner)
        logprobs = logprobs.clone()
        logprobs[:, EOS_ID] += ends[:, 0] * ends[:, 1] - 5.0
        ends = torch.stack([ends[:, 0], ends[:, 1] + 1], dim=1)
        return torch.log_softmax(logprobs, dim=-1), {**inner, "ends": ends}, attention


def _rows_stepped(search, decoder, memory):
    """The search's output and the number of rows the decoder stepped at each step."""
    stepped, step = [], decoder.step
    decoder.step = lambda tokens, state: stepped.append(tokens.shape[0]) or step(tokens, state)
    try:
        return search(decoder, memory), stepped
    finally:
        del decoder.step


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("drop_finished_share", [0.5, 0.0])
def test_dropping_ended_captions_from_the_decoders_rows_changes_nothing(name, drop_finished_share):
    """Greedy, seeded samples and beam search (with and without groups) stay the same to the token
    (scores, attention within the captions) when the decoder stops stepping captions that ended
    and images whose beam search is done (0.0: as soon as any has)."""
    decoder, memory = _EndsAtVariedSteps(_decoder(name)), _memory(batch=6)
    searches = [
        lambda: GreedySearch(max_new_tokens=10),
        lambda: SampleSearch(seed=3, num_return_sequences=8, max_new_tokens=10),
        lambda: BeamSearch(num_beams=3, num_return_sequences=3, length_penalty=0.0, max_new_tokens=10),
        lambda: BeamSearch(
            num_beams=4, num_beam_groups=2, diversity_penalty=0.5, length_penalty=0.0, max_new_tokens=10
        ),
    ]
    for make in searches:
        every_row, dropping = make(), make()
        every_row.drop_finished_share, dropping.drop_finished_share = None, drop_finished_share
        full = every_row(decoder, memory)
        fast, stepped = _rows_stepped(dropping, decoder, memory)
        assert stepped[-1] < stepped[0]  # captions ended and the decoder stopped stepping them
        assert torch.equal(fast.sequences, full.sequences)
        assert torch.allclose(fast.scores, full.scores, atol=1e-12)
        if full.normalized_scores is not None:
            assert torch.allclose(fast.normalized_scores, full.normalized_scores, atol=1e-12)
        if full.attentions is not None:
            within = (full.sequences != PAD_ID).unsqueeze(-1).expand_as(full.attentions)
            assert torch.allclose(fast.attentions[within], full.attentions[within], atol=1e-12)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", DECODERS)
def test_length_limits_and_unk(strategy, name):
    memory = _memory(batch=4)
    eager = _with_bias(_decoder(name), EOS_ID, 100.0)  # <eos> would win every step
    out = STRATEGIES[strategy](max_new_tokens=6, min_new_tokens=3)(eager, memory).best()
    assert (out[:, :3] != EOS_ID).all() and (out[:, 3] == EOS_ID).all()
    never_ends = _with_bias(_decoder(name), EOS_ID, -100.0)
    out = STRATEGIES[strategy](max_new_tokens=5)(never_ends, memory).best()
    assert out.shape[1] == 5 and (out != EOS_ID).all() and (out != PAD_ID).all()
    unknown = _with_bias(_decoder(name), UNK_ID, 100.0)
    assert (STRATEGIES[strategy](max_new_tokens=5)(unknown, memory).best() != UNK_ID).all()
    assert (
        STRATEGIES[strategy](max_new_tokens=5, suppress_unk=False)(unknown, memory).best()[:, 0] == UNK_ID
    ).all()


def _ngrams(sequence: list[int], size: int) -> list[tuple]:
    return [tuple(sequence[i : i + size]) for i in range(len(sequence) - size + 1)]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", DECODERS)
def test_no_repeat_ngrams_and_repeated_words(strategy, name):
    decoder = _with_bias(_decoder(name, vocab=7), EOS_ID, -100.0)  # long captions from 3 words must repeat
    memory = _memory(batch=4)
    for size in (1, 2, 3):
        out = STRATEGIES[strategy](max_new_tokens=3 if size == 1 else 9, no_repeat_ngram_size=size)(
            decoder, memory
        )
        for sequence in out.best():
            ngrams = _ngrams([t for t in _trim(sequence) if t != EOS_ID], size)
            assert len(ngrams) == len(set(ngrams)), (size, sequence)
    out = STRATEGIES[strategy](max_new_tokens=9, block_repeated_words=True)(decoder, memory)
    for sequence in out.best():
        words = _trim(sequence)
        assert all(a != b for a, b in zip(words, words[1:]))


def test_repeated_ngram_mask_names_the_completing_words():
    history = torch.tensor([[4, 5, 4, 6, 4], [7, 7, 7, 7, 7]])
    mask = repeated_ngram_mask(history, 2, 9)
    assert mask[0].nonzero().flatten().tolist() == [5, 6] and mask[1].nonzero().flatten().tolist() == [7]
    assert repeated_ngram_mask(history, 1, 9)[0].nonzero().flatten().tolist() == [4, 5, 6]
    assert not repeated_ngram_mask(history[:, :1], 2, 9).any()


def test_sampling_is_reproducible_under_a_seed_and_varies_without_one():
    decoder, memory = _decoder("lstm"), _memory(batch=5)
    first = SampleSearch(seed=7, num_return_sequences=4, max_new_tokens=8)(decoder, memory)
    second = SampleSearch(seed=7, num_return_sequences=4, max_new_tokens=8)(decoder, memory)
    assert torch.equal(first.sequences, second.sequences) and first.sequences.shape[:2] == (5, 4)
    torch.manual_seed(0)
    a = SampleSearch(max_new_tokens=8)(decoder, memory).sequences
    torch.manual_seed(0)
    b = SampleSearch(max_new_tokens=8)(decoder, memory).sequences
    c = SampleSearch(max_new_tokens=8)(decoder, memory).sequences
    assert torch.equal(a, b) and not torch.equal(b, c)
    assert len({tuple(_trim(s)) for s in first.sequences.flatten(0, 1)}) > 5  # samples differ


def test_sample_scores_are_the_models_log_probabilities():
    decoder, memory = _decoder("attention"), _memory(batch=3)
    output = SampleSearch(seed=1, temperature=1.5, max_new_tokens=8)(decoder, memory)
    for i in range(3):
        sequence = _trim(output.best()[i])
        assert float(output.scores[i, 0]) == pytest.approx(
            _teacher_forced_score(decoder, _rows(memory, i), sequence), abs=1e-9
        )


def test_top_k_and_top_p_keep_only_the_head_of_the_distribution():
    logprobs = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=torch.float64))
    kept = lambda search: torch.isfinite(search.filtered(logprobs))[0].tolist()  # noqa: E731
    assert kept(SampleSearch(top_k=2)) == [True, True, False, False]
    assert kept(SampleSearch(top_p=0.79)) == [True, True, False, False]
    assert kept(SampleSearch(top_p=0.81)) == [True, True, True, False]
    assert kept(SampleSearch(top_p=0.1)) == [True, False, False, False]
    sharpened = SampleSearch(temperature=0.5).filtered(logprobs).softmax(-1)
    assert sharpened[0, 0] > 0.5


@pytest.mark.parametrize(
    "bad", [dict(num_beams=0), dict(num_beams=2, num_return_sequences=3), dict(early_stopping="sometimes")]
)
def test_invalid_beam_settings_are_rejected(bad):
    with pytest.raises(ValueError):
        BeamSearch(**bad)


def test_search_settings_are_saved_with_their_names():
    config = BeamSearch(num_beams=5, length_penalty=0.5, no_repeat_ngram_size=3).config()
    assert config == {
        "name": "BeamSearch",
        "max_new_tokens": 20,
        "min_new_tokens": 0,
        "suppress_unk": True,
        "no_repeat_ngram_size": 3,
        "block_repeated_words": False,
        "num_beams": 5,
        "length_penalty": 0.5,
        "num_return_sequences": 1,
        "num_beam_groups": 1,
        "diversity_penalty": 0.0,
        "early_stopping": "never",
    }
    assert "_generators" not in SampleSearch(seed=1).config()


@pytest.mark.parametrize("name", DECODERS)
def test_early_stopping_trades_exactness_for_fewer_steps(name):
    """Hugging Face's settings: `true` stops an image once num_beams captions ended, `false` judges
    the best open beam at its current length; both step fewer rows than the exact `never` (`true`
    no more than `false`), and without a length penalty `false` is exact too."""
    decoder, memory = _EndsAtVariedSteps(_decoder(name)), _memory(batch=6)

    def run(early_stopping, length_penalty):
        search = BeamSearch(
            num_beams=3,
            num_return_sequences=3,
            length_penalty=length_penalty,
            early_stopping=early_stopping,
            max_new_tokens=12,
        )
        search.drop_finished_share = 0.0  # done images leave at once: rows stepped count the steps
        output, stepped = _rows_stepped(search, decoder, memory)
        return output, sum(stepped)

    (never, never_rows), (heuristic, heuristic_rows), (eager, eager_rows) = (
        run(setting, 1.0) for setting in ("never", False, True)
    )
    assert eager_rows <= heuristic_rows < never_rows
    assert (eager.normalized_scores <= never.normalized_scores + 1e-9).all()  # never is the exact one
    assert (heuristic.normalized_scores <= never.normalized_scores + 1e-9).all()
    exact, _ = run("never", 0.0)
    assert torch.equal(run(False, 0.0)[0].sequences, exact.sequences)


@pytest.mark.parametrize("name", DECODERS)
def test_beam_groups_without_a_penalty_each_repeat_plain_beam_search(name):
    decoder, memory = _decoder(name), _memory(batch=4)
    plain = BeamSearch(num_beams=3, num_return_sequences=3, max_new_tokens=8)(decoder, memory)
    grouped = BeamSearch(num_beams=6, num_beam_groups=2, num_return_sequences=6, max_new_tokens=8)(
        decoder, memory
    )
    for i in range(4):
        expected = sorted(tuple(_trim(s)) for s in plain.sequences[i]) * 2
        assert sorted(tuple(_trim(s)) for s in grouped.sequences[i]) == sorted(expected)
        torch.testing.assert_close(grouped.scores[i, ::2], plain.scores[i])


@pytest.mark.parametrize("name", DECODERS)
def test_a_large_diversity_penalty_makes_the_groups_start_differently(name):
    decoder, memory = _decoder(name), _memory(batch=5)
    search = BeamSearch(
        num_beams=3,
        num_beam_groups=3,
        diversity_penalty=1e3,
        num_return_sequences=3,
        max_new_tokens=6,
        min_new_tokens=1,  # an <eos> ends a hypothesis rather than continuing it: it is not a chosen word
    )
    output = search(decoder, memory)
    for i in range(5):
        assert len({int(s[0]) for s in output.sequences[i]}) == 3
    plain = BeamSearch(num_beams=3, num_beam_groups=3, num_return_sequences=3, max_new_tokens=6)(
        decoder, memory
    )
    assert all(len({int(s[0]) for s in plain.sequences[i]}) == 1 for i in range(5))  # = greedy thrice


@pytest.mark.parametrize("name", DECODERS)
def test_batched_diverse_beam_equals_one_image_at_a_time(name):
    decoder, memory = _decoder(name), _memory(batch=5)
    search = BeamSearch(
        num_beams=4, num_beam_groups=2, diversity_penalty=0.7, num_return_sequences=4, max_new_tokens=8
    )
    batched = search(decoder, memory)
    for i in range(5):
        alone = search(decoder, _rows(memory, i))
        assert [_trim(s) for s in batched.sequences[i]] == [_trim(s) for s in alone.sequences[0]]
        torch.testing.assert_close(batched.scores[i], alone.scores[0])


def test_groups_must_divide_the_beams():
    with pytest.raises(Exception, match="must divide"):
        BeamSearch(num_beams=4, num_beam_groups=3)
