"""CLIPScore / RefCLIPScore: the paper's formula on a tiny randomly initialised open_clip model,
checked against a hand computation; batch-independence; the message without weights."""

import json

import pytest
import torch
from conftest import compose

from captionlab.errors import UserError
from captionlab.metrics.clip_score import PROMPT, W, clip_scores, load_clip
from captionlab.pipelines.evaluate import run_evaluation

open_clip = pytest.importorskip("open_clip")

TINY = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip_config")
    (folder / "tiny-clip.json").write_text(json.dumps(TINY))
    open_clip.add_model_config(folder)
    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("tiny-clip")
    weights = folder / "tiny-clip.pt"
    torch.save(model.state_dict(), weights)
    return model.eval(), preprocess, open_clip.get_tokenizer("tiny-clip"), weights


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def test_scores_follow_the_papers_definition(tiny_clip):
    model, _, tokenizer, _ = tiny_clip
    torch.manual_seed(1)
    images = torch.randn(2, 3, 32, 32)
    candidates = ["a dog on the grass", "two people on a beach"]
    references = [["a brown dog runs", "a dog plays"], ["people walk by the sea"]]
    scores = clip_scores(model, tokenizer, images, candidates, references)
    with torch.no_grad():
        image = _unit(model.encode_image(images))
        for row, (candidate, refs) in enumerate(zip(candidates, references)):
            text = _unit(model.encode_text(tokenizer([PROMPT + candidate])))[0]
            clip_s = W * max(float(image[row] @ text), 0.0)
            ref = _unit(model.encode_text(tokenizer([PROMPT + r for r in refs])))
            ref_s = max(float((ref @ text).max()), 0.0)
            expected = 2 * clip_s * ref_s / (clip_s + ref_s) if clip_s + ref_s > 0 else 0.0
            assert float(scores["clip_s"][row]) == pytest.approx(clip_s, abs=1e-5)
            assert float(scores["refclip_s"][row]) == pytest.approx(expected, abs=1e-5)
    alone = clip_scores(model, tokenizer, images[1:], candidates[1:], references[1:])
    assert float(alone["clip_s"][0]) == pytest.approx(float(scores["clip_s"][1]), abs=1e-5)
    assert float(alone["refclip_s"][0]) == pytest.approx(float(scores["refclip_s"][1]), abs=1e-5)


def test_local_weights_load_and_a_missing_file_is_one_line(tiny_clip, tmp_path):
    _, _, _, weights = tiny_clip
    model, preprocess, _ = load_clip("tiny-clip", str(weights))
    assert sum(p.numel() for p in model.parameters()) > 0 and callable(preprocess)
    with pytest.raises(UserError, match="metrics.clip_checkpoint"):
        load_clip("ViT-B-32", str(tmp_path / "absent.pt"))


def test_evaluate_adds_clip_scores_and_skips_them_without_weights(tiny_run, tiny_clip, tmp_path):
    run, _, _ = tiny_run
    _, _, _, weights = tiny_clip

    def evaluate(folder, *extra):
        cfg = compose(
            [
                f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
                f"paths.output_dir={folder}",
                "metrics.meteor=false",
                "trainer.enable_progress_bar=false",
                "metrics.clip_score=true",
                "metrics.clip_model=tiny-clip",
                *extra,
            ],
            config_name="evaluate",
        )
        return run_evaluation(cfg)["val"]

    scores = evaluate(tmp_path / "with", f"metrics.clip_checkpoint={weights}")
    assert 0 <= scores["clip_s"] <= W and 0 <= scores["refclip_s"] <= W
    per_image = json.loads((tmp_path / "with" / "per_image_val.json").read_text())
    assert all("clip_s" in row for row in per_image)
    without = evaluate(tmp_path / "without")
    assert "clip_s" not in without and "cider" in without
