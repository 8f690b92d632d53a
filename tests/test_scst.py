"""Self-critical training: the CIDEr-D reward, the baselines, and a second stage from a checkpoint."""

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import TINY_OVERRIDES, compose

from captionlab.metrics.cider_d import CiderD
from captionlab.text import tokenize
from captionlab.training.scst import SelfCriticalLoss

REFERENCES = {
    1: ["a dog runs on the grass", "a brown dog runs in a field", "the dog is running fast now"],
    2: [
        "two men play soccer on a field",
        "men playing football in the park",
        "two people kick a ball outside",
    ],
    3: ["a child eats an ice cream", "a little girl eating ice cream", "kid with an ice cream cone"],
}
CANDIDATES = {
    1: "a dog runs in the grass",
    2: "two men play ball on a field",
    3: "a girl eating an ice cream",
}


def test_cider_d_equals_pycocoevalcap_with_the_same_document_frequencies():
    from pycocoevalcap.cider.cider import Cider

    cider = CiderD(REFERENCES.values())
    ours = [cider.score(CANDIDATES[k], cider.references(k, REFERENCES[k])) for k in REFERENCES]
    gts = {k: [" ".join(tokenize(r)) for r in v] for k, v in REFERENCES.items()}
    res = {k: [" ".join(tokenize(v))] for k, v in CANDIDATES.items()}
    _, theirs = Cider().compute_score(gts, res)
    assert ours == pytest.approx(list(theirs), abs=1e-9)


def test_cider_d_document_frequencies_do_not_depend_on_the_batch():
    cider = CiderD(REFERENCES.values())
    alone = cider.score(CANDIDATES[1], cider.references(1, REFERENCES[1]))
    for key in (2, 3):
        cider.score(CANDIDATES[key], cider.references(key, REFERENCES[key]))
    assert cider.score(CANDIDATES[1], cider.references(1, REFERENCES[1])) == alone
    assert cider.score("zebra zebra", cider.references(1, REFERENCES[1])) == 0.0


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="baseline"):
        SelfCriticalLoss(baseline="median")
    with pytest.raises(ValueError, match="num_samples"):
        SelfCriticalLoss(baseline="mean", num_samples=1)
    with pytest.raises(ValueError, match="sample_method"):
        SelfCriticalLoss(sample_method="nucleus")
    with pytest.raises(ValueError, match="loss.dropout=true needs loss.sample_method=beam"):
        SelfCriticalLoss(sample_method="sample", dropout=True)
    with pytest.raises(ValueError, match="loss.mbr_weight needs loss.baseline=mean"):
        SelfCriticalLoss(baseline="greedy", mbr_weight=1.0)
    with pytest.raises(ValueError, match="needs loss.mbr_samples >= 1"):
        SelfCriticalLoss(sample_method="beam", mbr_weight=1.0)
    for option in ("repeat_penalty", "unlikelihood_weight", "greedy_unlikelihood_weight"):
        with pytest.raises(ValueError, match="must be 0 or more"):
            SelfCriticalLoss(**{option: -1.0})


class _Records:
    """What `prepare` reads of a DataModule: the train split, the records it trains on, the
    vocabulary, whether it serves mirror images."""

    def __init__(self, vocab, references=REFERENCES, hflip=False):
        from captionlab.types import CaptionRecord

        self.vocab, self.hflip = vocab, hflip
        self.records = [CaptionRecord(f"{k}.jpg", k, "train", tuple(v)) for k, v in references.items()]

    def split(self, name):
        return self.records

    def training_records(self):
        return self.records


@pytest.mark.parametrize("include_eos", [True, False])
def test_the_reward_sees_the_end_token_and_penalises_a_caption_cut_at_the_limit(include_eos):
    from captionlab.text import EOS_ID, PAD_ID, Vocabulary

    vocab = Vocabulary.build([c for v in REFERENCES.values() for c in v])
    loss = SelfCriticalLoss(include_eos=include_eos)
    loss.prepare(_Records(vocab))
    words = [vocab.index[w] for w in "a dog runs on the grass".split()]
    ended = torch.tensor([*words, EOS_ID, PAD_ID])
    cut = torch.tensor([*words, vocab.index["a"], vocab.index["dog"]])  # max_new_tokens reached, no <eos>
    [ended_reward, cut_reward] = loss.rewards(
        [loss._sequence_words(ended), loss._sequence_words(cut)], [0, 0]
    )
    same_words = torch.tensor(words)  # the same words without <eos>: cut at exactly the limit
    [bare] = loss.rewards([loss._sequence_words(same_words)], [0])
    if include_eos:
        assert loss._sequence_words(ended)[-1] == "<eos>" and "<eos>" not in loss._sequence_words(cut)
        assert bare < ended_reward and cut_reward < ended_reward
    else:
        assert bare == ended_reward


def test_a_mirror_image_is_rewarded_against_its_mirrored_references():
    from captionlab.text import Vocabulary

    references = {1: ["a dog to the left of a cat", "a dog sits left of a cat", "a dog and a cat"]}
    vocab = Vocabulary.build(references[1] + ["right"])
    loss = SelfCriticalLoss(bleu4_weight=1.0)
    loss.prepare(_Records(vocab, references, hflip=True))
    left, right = (
        loss.reward_words("a dog to the left of a cat"),
        loss.reward_words("a dog to the right of a cat"),
    )
    [left_plain, right_plain, left_mirrored, right_mirrored] = loss.rewards(
        [left, right, left, right], [0, 0, 0, 0], [False, False, True, True]
    )
    assert right_mirrored == pytest.approx(float(left_plain)) and left_mirrored == pytest.approx(
        float(right_plain)
    )
    assert right_mirrored > left_mirrored and left_plain > right_plain


def test_without_hflip_there_are_no_mirrored_references():
    from captionlab.text import Vocabulary

    loss = SelfCriticalLoss()
    loss.prepare(_Records(Vocabulary.build([c for v in REFERENCES.values() for c in v])))
    with pytest.raises(KeyError):
        loss.rewards([loss.reward_words("a dog")], [0], [True])


def test_agreement_is_the_mean_similarity_to_the_evidence():
    from captionlab.metrics.consensus import Consensus
    from captionlab.text import PAD_ID, Vocabulary

    vocab = Vocabulary.build([c for v in REFERENCES.values() for c in v])
    loss = SelfCriticalLoss(num_samples=3, mbr_weight=1.0, mbr_samples=2)
    loss.prepare(_Records(vocab))
    own = ["a dog runs on the grass", "a dog runs in a field", "two men play soccer"]
    evidence = ["a dog runs on the grass", "a brown dog runs"]

    def sequences(captions):  # one image's captions as a search returns them: words, <eos>, padding
        ids = [vocab.encode(c)[1:] for c in captions]
        return torch.tensor([row + [PAD_ID] * (10 - len(row)) for row in ids]).unsqueeze(0)

    agreement = loss.agreement(sequences(own), sequences(evidence))[0]
    consensus = Consensus("cider", REFERENCES.values())
    for i, caption in enumerate(own):
        expected = [float(consensus.similarities([None, None], [caption, e])[0, 1]) for e in evidence]
        assert float(agreement[i]) == pytest.approx(sum(expected) / len(expected), rel=1e-5)
    # the typical caption agrees most, the odd one out least
    assert int(agreement.argmax()) == 0 and int(agreement.argmin()) == 2


def test_the_agreement_joins_the_reward_with_evidence_from_the_starting_model(scst_module, monkeypatch):
    module, datamodule = scst_module
    batch = next(iter(datamodule.train_dataloader()))
    advantages, sampled_by = {}, []
    for weight in (0.0, 1.0):
        loss = SelfCriticalLoss(num_samples=3, mbr_weight=weight, mbr_samples=2)
        loss.prepare(datamodule)
        # the references' reward alone gives every sample the same: no advantage without agreement
        monkeypatch.setattr(loss, "rewards", lambda captions, *args: torch.ones(len(captions)))
        if weight:
            sampler = loss.evidence_sampler
            loss.evidence_sampler = lambda decoder, memory: (
                sampled_by.append(decoder) or sampler(decoder, memory)
            )
        torch.manual_seed(0)
        outputs = loss.step(module.captioner, batch)
        advantages[weight] = float(outputs["advantage"])
        assert ("agreement" in outputs) == bool(weight)
    assert advantages[0.0] == 0.0 and advantages[1.0] > 0.0
    start = loss.reference(module.captioner)
    assert start is not module.captioner and sampled_by == [start.decoder]


@pytest.fixture(scope="module")
def scst_module(tiny_run):
    from captionlab.registry import build
    from captionlab.systems.loading import load_system

    run, cfg, _ = tiny_run
    loss_cfg = compose(TINY_OVERRIDES + ["loss=scst", "paths.output_dir=/tmp/x"]).loss
    module = load_system(run / "checkpoints" / "best.ckpt")
    module.loss = build(loss_cfg, "loss")
    datamodule = build(cfg.data, "data", vocab=module.vocab, preprocessing=module.preprocessing)
    datamodule.prepare()
    module.loss.prepare(datamodule)
    return module, datamodule


@pytest.mark.parametrize("baseline", ["mean", "greedy"])
def test_scst_step_gives_a_gradient_and_its_figures(scst_module, baseline):
    module, datamodule = scst_module
    module.loss.baseline = baseline
    module.train()
    batch = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(0)
    outputs = module.loss.step(module.captioner, batch)
    outputs["loss"].backward()
    grads = [p.grad for p in module.captioner.decoder.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)
    assert float(outputs["reward"]) > 0
    module.zero_grad()


def test_the_step_rewards_each_image_as_the_batch_serves_it(scst_module, monkeypatch):
    module, datamodule = scst_module
    batch = next(iter(datamodule.train_dataloader()))
    indices = batch["index"].tolist()
    batch["mirrored"] = torch.tensor([row % 2 == 0 for row in range(len(indices))])
    asked = []

    def rewards(captions, indices, mirrored=None):
        asked.append((indices, mirrored))
        return torch.zeros(len(captions))

    monkeypatch.setattr(module.loss, "rewards", rewards)
    module.loss.step(module.captioner, batch)
    n = module.loss.num_samples
    samples, greedy = asked
    assert samples == (
        [i for i in indices for _ in range(n)],
        [r % 2 == 0 for r in range(len(indices)) for _ in range(n)],
    )
    assert greedy == (indices, [r % 2 == 0 for r in range(len(indices))])


@pytest.mark.parametrize("baseline", ["mean", "greedy"])
def test_the_repeat_penalty_lowers_the_advantage_of_a_caption_that_repeats_a_word(
    scst_module, monkeypatch, baseline
):
    from captionlab.text import PAD_ID

    module, datamodule = scst_module
    vocab = module.vocab
    batch = next(iter(datamodule.train_dataloader()))
    size, penalty = batch["index"].shape[0], 0.6
    a, b = vocab.words[-2:]  # two of the tiny run's words
    captions = [f"{a} {b} {b}", f"{a} {b}", f"{b} {a}"]  # only the first repeats a word

    def encoded(caption):  # as a search returns it: words, <eos>, padding
        ids = vocab.encode(caption)[1:]
        return ids + [PAD_ID] * (8 - len(ids))

    drawn = torch.tensor([[encoded(c) for c in captions]] * size)
    advantages = {}
    for weight in (0.0, penalty):
        loss = SelfCriticalLoss(num_samples=3, baseline=baseline, repeat_penalty=weight)
        loss.prepare(datamodule)
        monkeypatch.setattr(loss, "rewards", lambda words, *args: torch.ones(len(words)))
        loss.sampler = lambda decoder, memory: SimpleNamespace(sequences=drawn)
        loss.greedy = lambda decoder, memory: SimpleNamespace(best=lambda: drawn[:, 1])
        advantages[weight] = float(loss.step(module.captioner, batch)["advantage"])
    assert advantages[0.0] == 0.0
    # mean of others: [-p, p/2, p/2], mean |.| = 2p/3; greedy (no repeat) baseline: [-p, 0, 0]
    expected = 2 * penalty / 3 if baseline == "mean" else penalty / 3
    assert advantages[penalty] == pytest.approx(expected, rel=1e-5)


def test_unlikelihood_is_minus_log_one_minus_the_probability_of_the_previous_word():
    from captionlab.training.scst import previous_word_unlikelihood

    # one caption [3, 4, 5] over 6 words; step 1 gives the previous word (3) probability 0.5, step 2
    # gives the previous word (4) 0.2; the last position is padding
    probs = torch.full((1, 4, 6), 0.1)
    probs[0, 1, 3] = 0.5
    probs[0, 2, 4] = 0.2
    probs[0, 3, 5] = 0.9
    sequences, mask = torch.tensor([[3, 4, 5, 0]]), torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    value = previous_word_unlikelihood(probs.log(), sequences, mask)
    assert float(value) == pytest.approx((-math.log(0.5) - math.log(0.8)) / 2, rel=1e-5)
    # its gradient lowers the previous word's score and no other word's
    logits = torch.zeros(1, 4, 6, requires_grad=True)
    previous_word_unlikelihood(torch.log_softmax(logits, -1), sequences, mask).backward()
    assert logits.grad[0, 1, 3] > 0 and logits.grad[0, 2, 4] > 0
    assert logits.grad[0, 1, 4] < 0 and logits.grad[0, 3].abs().sum() == 0


@pytest.mark.parametrize(
    "option, figure",
    [("unlikelihood_weight", "unlikelihood"), ("greedy_unlikelihood_weight", "greedy_unlikelihood")],
)
def test_an_unlikelihood_term_joins_the_step_loss(scst_module, option, figure):
    module, datamodule = scst_module
    batch = next(iter(datamodule.train_dataloader()))
    outputs = {}
    for weight in (0.0, 2.0):
        loss = SelfCriticalLoss(num_samples=3, **{option: weight})
        loss.prepare(datamodule)
        torch.manual_seed(0)
        outputs[weight] = loss.step(module.captioner, batch)
    assert figure not in outputs[0.0] and float(outputs[2.0][figure]) > 0
    difference = float((outputs[2.0]["loss"] - outputs[0.0]["loss"]).detach())
    assert difference == pytest.approx(2.0 * float(outputs[2.0][figure]), rel=1e-4)


def test_the_greedy_unlikelihood_is_taken_on_the_greedy_caption(scst_module):
    from captionlab.text import BOS_ID, EOS_ID, PAD_ID
    from captionlab.training.scst import caption_mask, previous_word_unlikelihood

    module, datamodule = scst_module
    batch = next(iter(datamodule.train_dataloader()))
    size = batch["index"].shape[0]
    # a greedy caption that repeats its first word, then ends; the padding after <eos> is skipped
    greedy = torch.tensor([[5, 5, 6, EOS_ID, PAD_ID, PAD_ID]] * size)
    loss = SelfCriticalLoss(num_samples=3, greedy_unlikelihood_weight=1.0)
    loss.prepare(datamodule)
    loss.greedy = lambda decoder, memory: SimpleNamespace(best=lambda: greedy)
    value = float(loss.step(module.captioner, batch)["greedy_unlikelihood"])
    captioner = module.captioner.eval()
    with torch.no_grad():
        logits, _ = captioner.decoder.teacher_forcing(
            captioner.encode(batch),
            torch.cat([torch.full((size, 1), BOS_ID), greedy[:, :-1]], 1),
            torch.arange(size),
        )
        expected = previous_word_unlikelihood(
            torch.log_softmax(logits.float(), -1), greedy, caption_mask(greedy)
        )
    assert value == pytest.approx(float(expected), rel=1e-5)
    assert caption_mask(greedy)[0].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]


def test_mean_baseline_is_the_other_samples_mean_and_advantages_sum_to_zero():
    from captionlab.training.scst import mean_of_others

    reward = torch.tensor([[1.0, 2.0, 4.0, 0.0, 3.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    baseline = mean_of_others(reward)
    assert baseline[0].tolist() == pytest.approx([9 / 4, 8 / 4, 6 / 4, 10 / 4, 7 / 4])
    assert (reward - baseline).sum(dim=1).tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    assert baseline[1].tolist() == [5.0] * 5


def test_scst_stage_from_an_xe_checkpoint(tiny_run, cache_dir, tmp_path):
    import json

    from captionlab.pipelines.train import run_training

    run, _, _ = tiny_run
    cfg = compose(
        TINY_OVERRIDES
        + [
            "loss=scst",
            f"init_from={run / 'checkpoints' / 'best.ckpt'}",
            "optim.optimizer.lr=5e-5",
            "trainer.max_epochs=1",
            "test=false",
            "logger=none",
            "callbacks.sample_captions.num_images=0",
            f"paths.output_dir={tmp_path}",
            f"paths.cache_dir={cache_dir}",
        ]
    )
    summary = run_training(cfg)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["stage"] == "scst"
    xe = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["vocab"] == xe["hyper_parameters"]["vocab"]
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert summary["val"]["num_images"] == 40 and "val/cider" in history[0]


def test_a_new_stage_trains_in_train_mode_and_scoring_loads_in_eval_mode(tiny_run):
    """Dropout must be on in the SCST stage (Lightning keeps the mode a module starts fitting in)."""
    from captionlab.systems.loading import load_system

    run, cfg, _ = tiny_run
    best = run / "checkpoints" / "best.ckpt"
    assert not load_system(best).captioner.decoder.training
    training = {section: dict(cfg[section]) for section in ("data", "search", "loss", "optim", "metrics")}
    stage = load_system(best, training=training)
    assert stage.captioner.decoder.training and float(stage.cider_best) == 0.0  # its own best score


def test_kl_to_the_starting_model_is_zero_at_the_start_and_entropy_is_logged(scst_module):
    module, datamodule = scst_module
    loss = SelfCriticalLoss(kl_weight=0.5, entropy_weight=0.01, num_samples=3, max_new_tokens=8)
    loss.prepare(datamodule)
    batch = next(iter(datamodule.train_dataloader()))
    torch.manual_seed(0)
    outputs = loss.step(module.captioner, batch)
    assert float(outputs["kl"]) == pytest.approx(0.0, abs=1e-6) and float(outputs["entropy"]) > 0
    outputs["loss"].backward()
    state = loss.get_extra_state()["reference"]  # the starting weights, kept for a resumed run
    with torch.no_grad():
        next(module.captioner.decoder.parameters()).add_(0.5)  # the policy moves away
    assert float(loss.step(module.captioner, batch)["kl"]) > 1e-4
    module.zero_grad()
    again = SelfCriticalLoss(kl_weight=0.5)
    again.set_extra_state({"reference": state})  # as a resumed run restores it
    assert all(torch.equal(again.reference(module.captioner).state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        next(module.captioner.decoder.parameters()).sub_(0.5)


def test_beam_scst_draws_num_samples_distinct_captions(scst_module):
    module, datamodule = scst_module
    loss = SelfCriticalLoss(sample_method="beam", num_samples=4, max_new_tokens=10)
    batch = next(iter(datamodule.train_dataloader()))
    drawn = loss.sampler(module.captioner.decoder, module.captioner.encode(batch)).sequences
    assert drawn.shape[:2] == (batch["index"].shape[0], 4)
    for captions in drawn:
        assert len({tuple(c.tolist()) for c in captions}) == 4
    loss.prepare(datamodule)
    outputs = loss.step(module.captioner, batch)
    assert torch.isfinite(outputs["loss"]) and float(outputs["reward"]) > 0


@pytest.mark.parametrize("dropout", [False, True])
def test_beam_scst_scores_the_beams_with_dropout_only_when_asked(scst_module, dropout):
    module, datamodule = scst_module
    loss = SelfCriticalLoss(
        sample_method="beam", num_samples=3, max_new_tokens=8, dropout=dropout, kl_weight=0.1
    )
    loss.prepare(datamodule)
    batch = next(iter(datamodule.train_dataloader()))
    module.train()
    values = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        outputs = loss.step(module.captioner, batch)
        values.append(float(outputs["loss"].detach()))
        # the KL compares the networks without dropout: zero for the starting model either way
        assert float(outputs["kl"]) == pytest.approx(0.0, abs=1e-6)
    assert module.captioner.training  # the step gives the mode back
    # the beams are found without randomness; only dropout in the scoring pass can change the loss
    assert (values[0] != values[1]) == dropout
