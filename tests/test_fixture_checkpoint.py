"""A checkpoint made before the package was re-layered (tests/fixtures/pre_layering.ckpt, made by
tests/fixtures/make_pre_layering_checkpoint.py) still loads and captions exactly as it did then,
with every search strategy and decoding rule that was in use."""

import json
from pathlib import Path

import pytest
from conftest import compose

from captionlab.pipelines.caption import run_captioning

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPECTED = json.loads((FIXTURES / "pre_layering_expected.json").read_text())


@pytest.mark.parametrize("search", sorted(EXPECTED))
def test_the_pre_layering_checkpoint_captions_as_it_did(search, tmp_path):
    expected = EXPECTED[search]
    results = run_captioning(
        compose(
            [
                f"ckpt_path={FIXTURES / 'pre_layering.ckpt'}",
                f"images={FIXTURES / 'pre_layering_images'}",
                f"paths.output_dir={tmp_path}",
                "device=cpu",
                "overlays=false",
                *expected["overrides"],
            ],
            config_name="caption",
        )
    )
    found = {Path(r["image"]).name: r["hypotheses"] for r in results}
    assert sorted(found) == sorted(expected["captions"])
    for image, hypotheses in expected["captions"].items():
        assert [h["caption"] for h in found[image]] == [h["caption"] for h in hypotheses], image
        assert [h["score"] for h in found[image]] == pytest.approx([h["score"] for h in hypotheses], abs=1e-4)
