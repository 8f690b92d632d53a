"""Every encoder preset x decoder composes into a captioner that trains and generates."""

import pytest
import torch
from conftest import CONF_DIR, compose

from captionlab.systems.captioner import CaptionerSystem

# image encoders (encoder=precomputed reads feature files: tests/test_precomputed.py)
ENCODERS = sorted(p.stem for p in (CONF_DIR / "encoder").glob("*.yaml") if p.stem != "precomputed")
DECODERS = sorted(p.stem for p in (CONF_DIR / "decoder").glob("*.yaml"))
VOCAB = ["<pad>", "<bos>", "<eos>", "<unk>"] + [f"w{i}" for i in range(12)]
TINY_DECODERS = {
    "lstm": ["decoder.hidden_dim=16", "decoder.embed_dim=8"],
    "attention": ["decoder.hidden_dim=16", "decoder.embed_dim=8", "decoder.attention_dim=8"],
    "updown": ["decoder.hidden_dim=16", "decoder.embed_dim=8", "decoder.attention_dim=8"],
    "transformer": ["decoder.dim=16", "decoder.num_heads=2", "decoder.ff_dim=32", "decoder.num_layers=1"],
}


def _module(encoder: str, decoder: str, *extra: str) -> CaptionerSystem:
    cfg = compose(
        [
            f"encoder={encoder}",
            f"decoder={decoder}",
            "encoder.pretrained=false",
            "data.source.image_size=64",
            "paths.output_dir=/tmp/unused",
            *TINY_DECODERS[decoder],
            *extra,
        ]
    )
    config = {
        k: __import__("omegaconf").OmegaConf.to_container(cfg[k], resolve=True)
        for k in ("encoder", "decoder", "search", "loss", "optim", "metrics")
    }
    torch.manual_seed(0)
    return CaptionerSystem(config, VOCAB)


def _batch():
    torch.manual_seed(1)
    tokens = torch.randint(4, len(VOCAB), (2, 2, 7))
    tokens[..., 0], tokens[..., -1] = 1, 2
    return {"image": torch.randn(2, 3, 64, 64), "tokens": tokens, "index": torch.arange(2)}


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("decoder", DECODERS)
def test_pair_trains_and_generates(encoder, decoder):
    module = _module(encoder, decoder, "encoder.freeze=none")
    loss = module.training_step(_batch(), 0)
    loss.backward()
    assert torch.isfinite(loss)
    module.eval()
    output = module.captioner.generate({"image": _batch()["image"]}, module.search)
    assert output.sequences.shape[0] == 2
    if decoder != "lstm":
        assert output.attentions is not None


def _step(module: CaptionerSystem) -> None:
    module.train()
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    optimizer.zero_grad()
    module.training_step(_batch(), 0).backward()
    optimizer.step()


def test_frozen_encoder_gets_no_gradient_no_optimizer_state_and_does_not_change():
    module = _module("resnet10t", "lstm", "encoder.freeze=all")
    before = {k: v.clone() for k, v in module.captioner.encoder.state_dict().items()}
    _step(module)
    assert all(p.grad is None for p in module.captioner.encoder.parameters())
    optimizer = module.configure_optimizers()["optimizer"]
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in module.captioner.encoder.parameters()}
    after = module.captioner.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too


def test_fine_tuned_encoder_changes_with_its_own_learning_rate():
    module = _module("resnet10t", "lstm", "encoder.freeze=none", "encoder.lr_mult=0.1")
    before = {k: v.clone() for k, v in module.captioner.encoder.named_parameters()}
    _step(module)
    changed = [k for k, v in module.captioner.encoder.named_parameters() if not torch.equal(before[k], v)]
    assert changed
    groups = module.configure_optimizers()["optimizer"].param_groups
    assert groups[1]["lr"] == pytest.approx(groups[0]["lr"] * 0.1)


def test_partial_fine_tuning_trains_only_the_last_stages():
    module = _module("resnet10t", "lstm", "encoder.freeze=1")
    trainable = {n for n, p in module.captioner.encoder.model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("layer4") for n in trainable)
