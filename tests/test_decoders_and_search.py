import pytest
import torch

from captionlab.errors import UserError
from captionlab.models.decoders.lstm import LSTMDecoder
from captionlab.models.encoders import EncoderOutput, TimmEncoder
from captionlab.search.greedy import GreedySearch
from captionlab.text import EOS_ID, PAD_ID, UNK_ID

VOCAB, FEATURES = 12, 16


def _memory(batch=3, dtype=torch.float64):
    torch.manual_seed(0)
    return EncoderOutput(
        torch.randn(batch, FEATURES, dtype=dtype), torch.randn(batch, 4, FEATURES, dtype=dtype)
    )


def _decoder(feed_image_every_step=False):
    torch.manual_seed(1)
    return (
        LSTMDecoder(
            VOCAB,
            FEATURES,
            embed_dim=8,
            hidden_dim=10,
            num_layers=2,
            feed_image_every_step=feed_image_every_step,
        )
        .double()
        .eval()
    )


@pytest.mark.parametrize("feed_image_every_step", [False, True])
def test_step_by_step_equals_teacher_forcing(feed_image_every_step):
    decoder, memory = _decoder(feed_image_every_step), _memory()
    tokens = torch.randint(4, VOCAB, (3, 7))
    tokens[:, 0] = 1
    full = torch.log_softmax(decoder(memory, tokens), dim=-1)
    state = decoder.init_state(memory)
    for t in range(tokens.shape[1]):
        logprobs, state, attention = decoder.step(tokens[:, t], state)
        assert attention is None
        torch.testing.assert_close(logprobs, full[:, t], atol=1e-5, rtol=0)


def test_reorder_state_selects_rows():
    decoder, memory = _decoder(), _memory()
    state = decoder.init_state(memory)
    reordered = decoder.reorder_state(state, torch.tensor([2, 0]))
    assert torch.equal(reordered["h"][0], state["h"][2]) and torch.equal(reordered["c"][1], state["c"][0])


def test_greedy_takes_the_argmax_and_stops_at_eos():
    decoder, memory = _decoder(), _memory()
    output = GreedySearch(max_new_tokens=6)(decoder, memory)
    assert output.sequences.shape[:2] == (3, 1)
    sequences = output.best()
    state, tokens = decoder.init_state(memory), torch.full((3,), 1)
    for t in range(sequences.shape[1]):
        logprobs, state, _ = decoder.step(tokens, state)
        logprobs[:, [0, 1, UNK_ID]] = float("-inf")
        expected = logprobs.argmax(-1)
        for row in range(3):
            if t == 0 or EOS_ID not in sequences[row, :t]:
                assert sequences[row, t] == expected[row]
            else:
                assert sequences[row, t] == PAD_ID
        tokens = expected


def test_min_and_max_new_tokens_and_unk_suppression():
    decoder, memory = _decoder(), _memory(batch=5)
    with torch.no_grad():
        decoder.output.bias.data[EOS_ID] = 50.0  # <eos> would win every step
        decoder.output.bias.data[UNK_ID] = 40.0
    out = GreedySearch(max_new_tokens=6, min_new_tokens=3)(decoder, memory).best()
    assert (out[:, :3] != EOS_ID).all() and (out[:, 3] == EOS_ID).all()
    assert (out != UNK_ID).all()
    out = GreedySearch(max_new_tokens=6, suppress_unk=False)(decoder, memory).best()
    assert (out[:, 0] == EOS_ID).all()
    decoder.output.bias.data[EOS_ID] = -50.0
    assert GreedySearch(max_new_tokens=4)(decoder, memory).best().shape[1] == 4


def test_invalid_lengths_are_rejected():
    with pytest.raises(ValueError):
        GreedySearch(max_new_tokens=2, min_new_tokens=3)


def test_encoder_gives_pooled_and_grid_features():
    encoder = TimmEncoder("resnet10t", input_size=64, crop=False)
    out = encoder(torch.randn(2, 3, 64, 64))
    assert out.pooled.shape == (2, encoder.feature_dim) and out.grid.shape == (2, 4, encoder.feature_dim)
    assert encoder.preprocessing["input_size"] == [3, 64, 64]


def test_feature_stage_concatenates_an_earlier_stage_beside_the_final_grid():
    torch.manual_seed(0)
    plain = TimmEncoder("resnet10t", input_size=64, crop=False, freeze="all").eval()
    staged = TimmEncoder("resnet10t", input_size=64, crop=False, freeze="all", feature_stage=[3, "final"])
    staged.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out, reference = staged.eval()(images), plain(images)
        stage3 = plain.model.layer3(
            plain.model.layer2(
                plain.model.layer1(
                    plain.model.maxpool(plain.model.act1(plain.model.bn1(plain.model.conv1(images))))
                )
            )
        )
    width = plain.model.feature_info[3]["num_chs"]
    assert staged.feature_dim == width + plain.feature_dim
    assert out.grid.shape == (2, 4, staged.feature_dim)  # the final 2x2 grid; stage 3 (4x4) pooled to it
    torch.testing.assert_close(out.grid[..., width:], reference.grid)
    pooled3 = torch.nn.functional.adaptive_avg_pool2d(stage3, 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out.grid[..., :width], pooled3)
    torch.testing.assert_close(out.pooled, out.grid.mean(1))


def test_feature_stage_alone_gives_its_finer_grid_and_bad_stages_are_refused():
    encoder = TimmEncoder("resnet10t", input_size=64, crop=False, feature_stage=3)
    out = encoder(torch.randn(2, 3, 64, 64))
    assert out.grid.shape == (2, 16, encoder.feature_dim) and encoder.feature_dim == 256
    assert (
        TimmEncoder("resnet10t", feature_stage=[3], grid_size=2)(torch.randn(1, 3, 64, 64)).grid.shape[1] == 4
    )
    assert TimmEncoder("resnet10t", feature_stage="final").stages is None  # the default grid
    for bad in (9, "last", [3, 3]):
        with pytest.raises(UserError, match="encoder.feature_stage"):
            TimmEncoder("resnet10t", feature_stage=bad)


def test_frozen_encoder_has_no_gradients_and_keeps_batchnorm_statistics():
    encoder = TimmEncoder("resnet10t", freeze="all")
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.model.training
    before = encoder.model.bn1.running_mean.clone() if hasattr(encoder.model, "bn1") else None
    encoder(torch.randn(2, 3, 64, 64))
    if before is not None:
        assert torch.equal(before, encoder.model.bn1.running_mean)


def test_zero_features_blinds_the_decoder():
    encoder = TimmEncoder("resnet10t", zero_features=True)
    out = encoder(torch.randn(2, 3, 64, 64))
    assert not out.pooled.any() and not out.grid.any()
