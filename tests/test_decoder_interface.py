"""Every decoder behind one interface (captionlab's three and the example plugin's GRU):
incremental decoding equals teacher forcing."""

import sys

import pytest
import torch
from conftest import ROOT

from captionlab.models.decoders import AttentionLSTMDecoder, LSTMDecoder, TransformerDecoder, UpDownDecoder
from captionlab.models.encoders import EncoderOutput
from captionlab.search.greedy import GreedySearch

sys.path.insert(0, str(ROOT / "examples" / "plugin" / "src"))
from captionlab_toy.decoder import GRUDecoder  # noqa: E402

VOCAB, FEATURES, GRID = 13, 16, 5

DECODERS = {
    "lstm": lambda: LSTMDecoder(VOCAB, FEATURES, embed_dim=8, hidden_dim=10),
    "attention": lambda: AttentionLSTMDecoder(VOCAB, FEATURES, embed_dim=8, hidden_dim=10, attention_dim=6),
    "updown": lambda: UpDownDecoder(VOCAB, FEATURES, embed_dim=8, hidden_dim=10, attention_dim=6),
    "transformer": lambda: TransformerDecoder(
        VOCAB, FEATURES, dim=16, num_layers=2, num_heads=4, ff_dim=32, num_encoder_layers=1
    ),
    "transformer_sinusoidal": lambda: TransformerDecoder(
        VOCAB,
        FEATURES,
        dim=16,
        num_layers=1,
        num_heads=2,
        ff_dim=32,
        positions="sinusoidal",
        tie_embeddings=False,
    ),
    "plugin_gru": lambda: GRUDecoder(VOCAB, FEATURES, embed_dim=8, hidden_dim=10),
}
ATTENDING = {"attention", "updown", "transformer", "transformer_sinusoidal"}


def _memory(batch=3):
    torch.manual_seed(0)
    return EncoderOutput(
        torch.randn(batch, FEATURES, dtype=torch.float64),
        torch.randn(batch, GRID, FEATURES, dtype=torch.float64),
    )


def _build(name):
    torch.manual_seed(1)
    return DECODERS[name]().double().eval()


@pytest.mark.parametrize("name", DECODERS)
def test_incremental_decoding_equals_teacher_forcing(name):
    decoder, memory = _build(name), _memory()
    tokens = torch.randint(4, VOCAB, (3, 8))
    tokens[:, 0] = 1
    full = torch.log_softmax(decoder(memory, tokens), dim=-1)
    assert full.shape == (3, 8, VOCAB)
    state = decoder.init_state(memory)
    for t in range(tokens.shape[1]):
        logprobs, state, attention = decoder.step(tokens[:, t], state)
        torch.testing.assert_close(logprobs, full[:, t], atol=1e-5, rtol=0)
        if name in ATTENDING:
            assert attention.shape == (3, GRID)
            torch.testing.assert_close(attention.sum(-1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("name", DECODERS)
def test_teacher_forcing_once_per_image_equals_once_per_caption(name):
    decoder, memory = _build(name), _memory()
    rows = torch.tensor([0, 0, 1, 1, 1, 2])  # training: several captions per image
    tokens = torch.randint(4, VOCAB, (6, 7))
    tokens[:, 0] = 1
    logits, _ = decoder.teacher_forcing(memory, tokens, rows)
    torch.testing.assert_close(logits, decoder(memory.index_select(rows), tokens))


@pytest.mark.parametrize("name", DECODERS)
def test_padding_after_a_caption_changes_none_of_its_steps(name):
    """Teacher forcing on captions of different lengths (the recurrent decoders skip the padding,
    longest first) gives each caption's real steps exactly what it gets alone."""
    decoder, memory = _build(name), _memory()
    rows = torch.tensor([0, 1, 1, 2, 0])
    lengths = [3, 8, 1, 5, 8]
    tokens = torch.randint(4, VOCAB, (5, 8))
    tokens[:, 0] = 1
    for row, length in enumerate(lengths):
        tokens[row, length:] = 0  # <pad>
    logits, _ = decoder.teacher_forcing(memory, tokens, rows)
    assert logits.shape == (5, 8, VOCAB)
    for row, length in enumerate(lengths):
        alone = decoder(memory.index_select(rows[row : row + 1]), tokens[row : row + 1, :length])
        torch.testing.assert_close(logits[row, :length], alone[0])


def test_attention_penalty_and_gradients_with_padded_captions():
    """The doubly stochastic penalty counts each caption's real steps only, and the loss's
    gradient reaches every parameter whatever the captions' lengths."""
    torch.manual_seed(1)
    decoder = AttentionLSTMDecoder(VOCAB, FEATURES, embed_dim=8, hidden_dim=10, attention_dim=6, dropout=0.0)
    decoder = decoder.double().train()
    memory, rows = _memory(), torch.tensor([2, 0, 1])
    tokens = torch.tensor([[1, 5, 6, 2, 0, 0], [1, 7, 8, 9, 10, 2], [1, 2, 0, 0, 0, 0]])
    logits, penalty = decoder.teacher_forcing(memory, tokens, rows)
    expected = []
    for row, length in enumerate([4, 6, 2]):
        _, alone = decoder.teacher_forcing(
            memory.index_select(rows[row : row + 1]), tokens[row : row + 1, :length]
        )
        expected.append(alone)
    # the penalty is a mean over captions x regions: the same for each caption's own mean
    torch.testing.assert_close(penalty, torch.stack(expected).mean())
    (logits.sum() + penalty).backward()
    assert all(p.grad is not None for p in decoder.parameters())


def test_attention_penalty_once_per_image_equals_once_per_caption():
    torch.manual_seed(1)
    decoder = AttentionLSTMDecoder(VOCAB, FEATURES, embed_dim=8, hidden_dim=10, attention_dim=6, dropout=0.0)
    decoder = decoder.double().train()
    memory, rows = _memory(), torch.tensor([0, 1, 1, 2, 2, 2])
    memory.mask = torch.tensor([[True] * GRID, [True] * 3 + [False] * 2, [True] * GRID])
    tokens = torch.randint(4, VOCAB, (6, 7))
    shared, penalty = decoder.teacher_forcing(memory, tokens, rows)
    expected, expected_penalty = decoder.teacher_forcing(memory.index_select(rows), tokens)
    torch.testing.assert_close(shared, expected)
    torch.testing.assert_close(penalty, expected_penalty)


@pytest.mark.parametrize("name", DECODERS)
def test_reordered_state_continues_like_the_selected_rows(name):
    decoder, memory = _build(name), _memory()
    state = decoder.init_state(memory)
    first = torch.tensor([5, 6, 7])
    _, state, _ = decoder.step(first, state)
    index = torch.tensor([2, 2, 0])
    reordered = decoder.reorder_state(state, index)
    logprobs, _, _ = decoder.step(torch.tensor([8, 8, 8]), reordered)
    expected, _, _ = decoder.step(torch.tensor([8, 8, 8]), state)
    torch.testing.assert_close(logprobs, expected[index])


@pytest.mark.parametrize("name", DECODERS)
def test_reordering_beams_keeps_the_image_memory_and_equals_a_full_reorder(name):
    decoder, memory = _build(name), _memory(batch=2)
    beams = torch.arange(2).repeat_interleave(3)  # 2 images x 3 beams
    state = decoder.reorder_state(decoder.init_state(memory), beams)
    _, state, _ = decoder.step(torch.tensor([4, 5, 6, 7, 8, 9]), state)
    within_images = torch.tensor([2, 2, 0, 4, 3, 3])
    full, kept = decoder.reorder_state(state, within_images), decoder.reorder_beams(state, within_images)
    assert full.keys() == kept.keys()
    assert name == "plugin_gru" or any(key.startswith("memory") for key in kept)  # the GRU keeps none
    for key in full:
        torch.testing.assert_close(kept[key], full[key])
        if key.startswith("memory"):
            assert kept[key] is state[key]


def test_an_ensemble_copies_the_grid_its_members_share_once():
    from captionlab.models.decoders.ensemble import EnsembleDecoder
    from captionlab.search.sample import SampleSearch

    members = [_build("attention"), _build("attention"), _build("updown")]
    ensemble, memory = EnsembleDecoder(members), _memory(batch=2)
    rows = torch.arange(2).repeat_interleave(4)
    state = ensemble.reorder_state(ensemble.init_state(memory), rows)
    assert state["memory_grid@0"] is state["memory_grid@1"]  # one copy for both soft-attention members
    copied = {key: value.index_select(0, rows) for key, value in ensemble.init_state(memory).items()}
    for key, value in state.items():
        torch.testing.assert_close(value, copied[key])
    kept = ensemble.reorder_state(state, torch.tensor([7, 0, 3]))
    assert kept["memory_grid@0"] is kept["memory_grid@1"]  # and it stays shared
    # the same captions as member states copied entry by entry
    shared = SampleSearch(num_return_sequences=4, seed=3, max_new_tokens=6)(ensemble, memory).sequences
    ensemble.reorder_state = lambda state, index: {k: v.index_select(0, index) for k, v in state.items()}
    copies = SampleSearch(num_return_sequences=4, seed=3, max_new_tokens=6)(ensemble, memory).sequences
    assert torch.equal(shared, copies)


@pytest.mark.parametrize("name", DECODERS)
def test_greedy_search_runs_on_every_decoder(name):
    decoder, memory = _build(name), _memory()
    output = GreedySearch(max_new_tokens=5)(decoder, memory)
    assert output.sequences.shape[0] == 3 and output.sequences.shape[2] <= 5
    if name in ATTENDING:
        assert output.attentions.shape[:2] == (3, 1) and output.attentions.shape[-1] == GRID


def test_doubly_stochastic_penalty_only_in_training():
    decoder, memory = _build("attention"), _memory()
    tokens = torch.randint(4, VOCAB, (3, 6))
    assert decoder.teacher_forcing(memory, tokens)[1] is None  # eval mode
    decoder.train()
    logits, penalty = decoder.teacher_forcing(memory, tokens)
    assert penalty is not None and penalty.item() >= 0
    assert logits.shape == (3, 6, VOCAB)  # returned with the logits: no state is kept between calls
    assert not any(isinstance(v, torch.Tensor) for k, v in vars(decoder).items() if "penalty" in k)


@pytest.mark.parametrize("name", ["lstm", "attention", "transformer"])
def test_word_vectors_initialise_the_embeddings(name, tmp_path):
    from captionlab.errors import UserError

    decoder = _build(name).float()
    dim = decoder.embed.embedding_dim
    words = ["<pad>", "<bos>", "<eos>", "<unk>", "dog", "runs"] + [f"w{i}" for i in range(VOCAB - 6)]
    vectors = tmp_path / "glove.txt"
    vectors.write_text(f"dog {' '.join(['0.5'] * dim)}\ncat {' '.join(['1'] * dim)}\n")
    assert decoder.load_word_vectors(vectors, words) == 1
    assert torch.allclose(decoder.embed.weight[4], torch.full((dim,), 0.5))
    vectors.write_text("2 3\ndog 1 2 3\n")
    with pytest.raises(UserError, match="dimensions"):
        decoder.load_word_vectors(vectors, words)


REGIONS = [5, 3, 2]  # real regions per image; the rest of each grid row is padding


def _padded_memory():
    """Three images with different numbers of regions, padded to GRID with garbage, and the
    same images alone without padding."""
    torch.manual_seed(2)
    grid = torch.randn(3, GRID, FEATURES, dtype=torch.float64)
    mask = torch.arange(GRID).unsqueeze(0) < torch.tensor(REGIONS).unsqueeze(1)
    grid[~mask] = 1e3 * torch.randn(int((~mask).sum()), FEATURES, dtype=torch.float64)
    pooled = torch.stack([grid[i, :n].mean(0) for i, n in enumerate(REGIONS)])
    alone = [EncoderOutput(pooled[i : i + 1], grid[i : i + 1, :n]) for i, n in enumerate(REGIONS)]
    return EncoderOutput(pooled, grid, mask), alone


@pytest.mark.parametrize("name", sorted(ATTENDING))
def test_padded_regions_get_no_attention_and_change_nothing(name):
    decoder, (memory, alone) = _build(name), _padded_memory()
    tokens = torch.randint(4, VOCAB, (3, 6))
    tokens[:, 0] = 1
    full = torch.log_softmax(decoder(memory, tokens), dim=-1)
    state = decoder.init_state(memory)
    singles = [decoder.init_state(m) for m in alone]
    for t in range(tokens.shape[1]):
        logprobs, state, attention = decoder.step(tokens[:, t], state)
        torch.testing.assert_close(logprobs, full[:, t], atol=1e-9, rtol=0)
        assert (attention[~memory.mask] == 0).all()
        for i, n in enumerate(REGIONS):
            single, singles[i], single_attention = decoder.step(tokens[i : i + 1, t], singles[i])
            torch.testing.assert_close(logprobs[i : i + 1], single, atol=1e-9, rtol=0)
            torch.testing.assert_close(attention[i, :n], single_attention[0], atol=1e-9, rtol=0)


def test_padded_regions_do_not_count_in_the_attention_penalty():
    decoder, (memory, alone) = _build("attention"), _padded_memory()
    decoder.train()
    decoder.dropout.p = 0.0
    tokens = torch.tensor([[1, 5, 6, 2]])
    penalties = [decoder.teacher_forcing(m, tokens)[1] for m in alone]
    _, batched = decoder.teacher_forcing(memory, tokens.expand(3, -1))
    # the batched penalty is the mean over all real regions of all images
    expected = sum(p * n for p, n in zip(penalties, REGIONS)) / sum(REGIONS)
    torch.testing.assert_close(batched, expected)
