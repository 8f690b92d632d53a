"""Bad input and faults as a new user meets them (issue 14): each case ends in one clear line or a
counted skip, and nothing is lost or overwritten silently."""

import errno
import json
import shutil

import numpy as np
import pytest
import timm
import torch
from conftest import TINY_OVERRIDES, compose, run_cli
from PIL import Image

from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.folder import FolderSource
from captionlab.data.images import UnreadableImage, check_image, load_image, set_max_image_pixels
from captionlab.errors import UserError
from captionlab.features import use_cached_features


# ---- a small dataset in the folder format, with one image that is cut short ---------------------
def _jpeg(path, seed, size=(64, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _folder_dataset(root, truncated=(), captions=("a red square", "a small blue circle")):
    """10 train, 3 val, 3 test images; the named ones are truncated JPEGs (their headers parse)."""
    splits = ["train"] * 10 + ["val"] * 3 + ["test"] * 3
    rows = ["image,caption,split"]
    for i, split in enumerate(splits):
        name = f"img{i:02d}.jpg"
        _jpeg(root / "images" / name, i)
        rows += [f"{name},{caption} {i % 3},{split}" for caption in captions]
    for name in truncated:
        _truncate(root / "images" / name)
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    return root


def _folder_overrides(root, tmp_path, cache_dir, *extra):
    return [o for o in TINY_OVERRIDES if not o.startswith("data.")] + [
        "data=folder",
        f"data.root={root}",
        "data.image_size=64",
        "data.num_workers=0",
        "data.batch_size=4",
        "trainer.max_epochs=1",
        "logger=none",
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.cache_dir={cache_dir}",
        *extra,
    ]


def test_a_truncated_jpeg_passes_the_header_check_and_fails_to_decode(tmp_path):
    _jpeg(tmp_path / "a.jpg", 0)
    _truncate(tmp_path / "a.jpg")
    check_image(tmp_path / "a.jpg")
    with pytest.raises(UnreadableImage, match="cannot decode image"):
        load_image(tmp_path / "a.jpg")


@pytest.mark.slow
@pytest.mark.parametrize("frozen", [False, True], ids=["pixels", "feature_cache"])
def test_undecodable_images_are_skipped_and_counted_in_training_and_evaluation(tmp_path, cache_dir, frozen):
    from captionlab.pipelines.train import run_training

    root = _folder_dataset(tmp_path / "data", truncated=("img03.jpg", "img11.jpg"))
    extra = ["encoder.freeze=all", f"data.feature_cache_dir={tmp_path / 'features'}"] if frozen else []
    summary = run_training(
        compose(_folder_overrides(root, tmp_path, cache_dir, "data.on_error=skip", *extra))
    )
    assert summary["skipped_images"] == {"train": ["img03.jpg"], "val": ["img11.jpg"]}
    assert summary["val"]["num_images"] == 2 and summary["val"]["skipped_images"] == 1
    assert summary["test"]["num_images"] == 3 and "skipped_images" not in summary["test"]
    predictions = json.loads((tmp_path / "run" / "predictions_val.json").read_text())
    assert sorted(p["image_id"] for p in predictions) == ["img10.jpg", "img12.jpg"]
    if frozen:  # the extraction skipped them too, and the cache remembers them for the next run
        (meta,) = (tmp_path / "features").glob("*/meta.json")
        unreadable = json.loads(meta.read_text())["unreadable"]
        assert {split: sorted(rows) for split, rows in unreadable.items()} == {
            "train": ["3"],
            "val": ["1"],
            "test": [],
        }
        assert "img03.jpg" in unreadable["train"]["3"]
        again = run_training(
            compose(_folder_overrides(root, tmp_path, cache_dir, "data.on_error=skip", *extra))
        )
        assert again["skipped_images"] == summary["skipped_images"]


@pytest.mark.slow
def test_an_undecodable_image_under_raise_is_one_line_even_from_a_worker(tmp_path):
    root = _folder_dataset(tmp_path / "data", truncated=("img05.jpg",))
    result = run_cli("train.py", *_folder_overrides(root, tmp_path, tmp_path / "cache", "data.num_workers=2"))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert (
        line.startswith("error: cannot decode image") and "img05.jpg" in line and "data.on_error=skip" in line
    )


def test_extraction_under_raise_stops_at_the_image_and_leaves_no_finished_cache(tmp_path, cache_dir):
    root = _folder_dataset(tmp_path / "data", truncated=("img02.jpg",))
    encoder = timm_encoder()
    datamodule = CaptionDataModule(
        FolderSource(str(root)), feature_cache_dir=str(tmp_path / "features"), batch_size=4, eval_batch_size=4
    )
    datamodule.set_preprocessing(encoder.preprocessing)
    with pytest.raises(UserError, match="img02.jpg.*data.on_error=skip"):
        use_cached_features(datamodule, encoder)
    assert not list((tmp_path / "features").glob("*/meta.json"))


def timm_encoder():
    from captionlab.models.encoders import TimmEncoder

    torch.manual_seed(0)
    return TimmEncoder("resnet10t", input_size=64, crop=False, freeze="all")


# ---- two processes sharing one feature cache -----------------------------------------------------
EXTRACTOR = """
import sys, time
from pathlib import Path
import torch
from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.folder import FolderSource
from captionlab.features import use_cached_features
from captionlab.models.encoders import TimmEncoder

root, features, log_file, release = map(Path, sys.argv[1:5])
torch.manual_seed(0)
encoder = TimmEncoder("resnet10t", input_size=64, crop=False, freeze="all")
forward = encoder.forward

def counted_forward(images):  # the first process holds its extraction open until the test releases it
    with log_file.open("a") as handle:
        handle.write("batch\\n")
    while not release.exists():
        time.sleep(0.1)
    return forward(images)

encoder.forward = counted_forward
datamodule = CaptionDataModule(FolderSource(str(root)), feature_cache_dir=str(features), batch_size=4, eval_batch_size=4)
datamodule.set_preprocessing(encoder.preprocessing)
use_cached_features(datamodule, encoder)
print("sum", float(datamodule.features["train"].pooled.astype("float64").sum()))
"""


def _wait_for(condition, seconds=300):
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.slow
def test_two_processes_extracting_the_same_features_at_once(tmp_path):
    import subprocess
    import sys

    root = _folder_dataset(tmp_path / "data")
    log_file, release = tmp_path / "batches.log", tmp_path / "release"
    args = [
        sys.executable,
        "-c",
        EXTRACTOR,
        str(root),
        str(tmp_path / "features"),
        str(log_file),
        str(release),
    ]
    outputs = [(tmp_path / f"out{i}.txt").open("w+") for i in range(2)]
    first = subprocess.Popen(args, stdout=outputs[0], stderr=subprocess.STDOUT)
    _wait_for(lambda: log_file.exists())  # the first process is extracting, holding the lock
    second = subprocess.Popen(args, stdout=outputs[1], stderr=subprocess.STDOUT)
    _wait_for(
        lambda: (
            "waiting for another process" in (tmp_path / "out1.txt").read_text() or second.poll() is not None
        )
    )
    release.touch()
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    texts = [(tmp_path / f"out{i}.txt").read_text() for i in range(2)]
    assert "waiting for another process that is extracting features" in texts[1], texts[1][-2000:]
    sums = [line for text in texts for line in text.splitlines() if line.startswith("sum ")]
    assert len(sums) == 2 and sums[0] == sums[1]
    # one extraction (3 splits of 10, 3 and 3 images in batches of 4: 5 batches), not two
    assert log_file.read_text().count("batch") == 5
    assert len(list((tmp_path / "features").glob("*/meta.json"))) == 1
    for handle in outputs:
        handle.close()


def test_a_folder_left_by_a_dead_extraction_is_redone(tmp_path):
    root = _folder_dataset(tmp_path / "data")
    encoder = timm_encoder()
    datamodule = CaptionDataModule(FolderSource(str(root)), feature_cache_dir=str(tmp_path / "features"))
    datamodule.set_preprocessing(encoder.preprocessing)
    use_cached_features(datamodule, encoder)
    (folder,) = [p for p in (tmp_path / "features").iterdir() if p.is_dir()]
    (folder / "meta.json").unlink()
    (folder / "train.pooled.tmp.npy").write_bytes(b"half")
    use_cached_features(datamodule, encoder)
    assert (folder / "meta.json").is_file() and not (folder / "train.pooled.tmp.npy").exists()


# ---- encoder weights of another architecture -------------------------------------------------------
def test_encoder_weights_must_match_the_architecture(tmp_path):
    from captionlab.models.encoders import TimmEncoder

    torch.manual_seed(1)
    source = timm.create_model("resnet10t")  # with its 1000-class classifier, as published weights are
    torch.save(source.state_dict(), tmp_path / "resnet10t.pth")
    encoder = TimmEncoder("resnet10t", checkpoint=str(tmp_path / "resnet10t.pth"))
    assert torch.equal(encoder.model.conv1[0].weight, source.conv1[0].weight)
    with pytest.raises(
        UserError,
        match=r"does not hold resnet18 weights: \d+ of \d+ backbone tensors match.*looks like a ResNet",
    ):
        TimmEncoder("resnet18", checkpoint=str(tmp_path / "resnet10t.pth"))
    with pytest.raises(UserError, match="does not hold vit_tiny_patch16_224 weights: 0 of"):
        TimmEncoder("vit_tiny_patch16_224", checkpoint=str(tmp_path / "resnet10t.pth"), input_size=64)
    (tmp_path / "notes.txt").write_text("these are not weights\n")
    with pytest.raises(UserError, match="not a readable weights file"):
        TimmEncoder("resnet10t", checkpoint=str(tmp_path / "notes.txt"))


def test_encoder_weights_from_a_captionlab_checkpoint(tiny_run):
    from captionlab.models.encoders import TimmEncoder

    best = tiny_run[0] / "checkpoints" / "best.ckpt"
    encoder = TimmEncoder("resnet10t", checkpoint=str(best), input_size=64)
    state = torch.load(best, weights_only=True)["state_dict"]
    assert torch.equal(encoder.model.conv1[0].weight, state["captioner.encoder.model.conv1.0.weight"])
    with pytest.raises(
        UserError, match="holds a resnet10t encoder, not resnet18: set encoder.name=resnet10t"
    ):
        TimmEncoder("resnet18", checkpoint=str(best))


# ---- checkpoints: resume safety, and a failed resume leaves the run folder alone -------------------
class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_resume_file_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "payload": _Evil(str(marker))}, tmp_path / "evil.ckpt")
    result = run_cli("train.py", f"ckpt_path={tmp_path / 'evil.ckpt'}", f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "cannot read checkpoint" in result.stderr
    assert "it would run Python code (io.open) when loaded; refused" in result.stderr
    assert "Traceback" not in result.stderr and not marker.exists()
    assert not (tmp_path / "run").exists()


def _finished_run_copy(tiny_run, tmp_path):
    """A copy of the tiny run with the .hydra/ records a train.py run has."""
    run_dir, _, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / ".hydra").mkdir(exist_ok=True)
    for name in ("config.yaml", "overrides.yaml", "hydra.yaml"):
        (copy / ".hydra" / name).write_text(f"# the finished run's {name}\n")
    return copy


RECORDS = (
    ".hydra/config.yaml",
    ".hydra/overrides.yaml",
    ".hydra/hydra.yaml",
    "provenance.json",
    "vocab.json",
    "search.json",
    "metrics.json",
    "history.jsonl",
)


def _records(folder):
    return {name: (folder / name).read_bytes() for name in RECORDS if (folder / name).exists()}


@pytest.mark.slow
@pytest.mark.parametrize("case", ["corrupt", "other_decoder", "text_file"])
def test_a_failed_resume_leaves_the_finished_run_as_it_was(tiny_run, tmp_path, case):
    copy = _finished_run_copy(tiny_run, tmp_path)
    checkpoint = copy / "checkpoints" / "last.ckpt"
    options = [o for o in TINY_OVERRIDES]
    if case == "corrupt":
        checkpoint.write_bytes(checkpoint.read_bytes()[:5000])
    elif case == "text_file":
        checkpoint = copy / "notes.txt"
        checkpoint.write_text("not a checkpoint\n")
    else:
        options.append("decoder=attention")
    before, files = _records(copy), sorted(copy.rglob("*"))
    result = run_cli("train.py", *options, f"ckpt_path={checkpoint}", "logger=none")
    assert result.returncode == 2, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    if case == "other_decoder":
        assert (
            line.startswith("error: cannot resume from")
            and "decoder._target_=decoder/attention (the checkpoint's run: decoder/lstm)" in line
        )
    else:
        assert line.startswith("error: cannot read checkpoint")
    assert _records(copy) == before and sorted(copy.rglob("*")) == files


# ---- full disk ------------------------------------------------------------------------------------
def _full_disk_save(real_save):
    def save(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


def test_a_full_disk_keeps_the_previous_checkpoint_and_is_one_line(tmp_path, monkeypatch):
    from captionlab.training.checkpoint_io import AtomicCheckpointIO

    target = tmp_path / "checkpoints" / "best.ckpt"
    AtomicCheckpointIO().save_checkpoint({"weights": torch.ones(2)}, target)
    monkeypatch.setattr(torch, "save", _full_disk_save(torch.save))
    with pytest.raises(
        UserError, match=f"no space left on {tmp_path / 'checkpoints'} while writing best.ckpt"
    ):
        AtomicCheckpointIO().save_checkpoint({"weights": torch.zeros(2)}, target)
    monkeypatch.undo()
    assert torch.equal(torch.load(target, weights_only=True)["weights"], torch.ones(2))
    assert [p.name for p in target.parent.iterdir()] == ["best.ckpt"]  # no temporary file left


def test_result_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    import os

    from captionlab.utils.io import write_json

    write_json(tmp_path / "metrics.json", {"cider": 1.0})

    def full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match="no space left on .* while writing metrics.json"):
        write_json(tmp_path / "metrics.json", {"cider": 2.0})
    monkeypatch.undo()
    assert json.loads((tmp_path / "metrics.json").read_text()) == {"cider": 1.0}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.slow
def test_a_full_disk_during_training_is_one_line_and_leaves_no_partial_checkpoint(
    tmp_path, cache_dir, monkeypatch
):
    from captionlab.pipelines.train import run_training

    overrides = [
        *TINY_OVERRIDES,
        "trainer.max_epochs=1",
        "data.source.num_train=32",
        "logger=none",
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.cache_dir={cache_dir}",
    ]
    cfg = compose(overrides)
    monkeypatch.setattr(torch, "save", _full_disk_save(torch.save))
    with pytest.raises(UserError, match="no space left on .*checkpoints while writing best.ckpt"):
        run_training(cfg)
    assert not list((tmp_path / "run").rglob("*.ckpt")) and not list((tmp_path / "run").rglob("*.tmp"))


# ---- images over the pixel limit -------------------------------------------------------------------
def test_images_over_the_pixel_limit_are_unreadable(tmp_path):
    _jpeg(tmp_path / "big.jpg", 0, size=(120, 100))
    try:
        set_max_image_pixels(5000)
        with pytest.raises(UnreadableImage, match="more pixels than data.max_image_pixels=5000"):
            check_image(tmp_path / "big.jpg")
        set_max_image_pixels(11000)  # between the limit and twice it PIL only warns: refused all the same
        with pytest.raises(UnreadableImage, match="max_image_pixels"):
            load_image(tmp_path / "big.jpg")
        set_max_image_pixels(None)
        assert load_image(tmp_path / "big.jpg").size == (120, 100)
    finally:
        set_max_image_pixels(89_478_485)


def test_a_large_image_is_skipped_by_the_datamodule_and_caption_py(tmp_path, tiny_run):
    root = _folder_dataset(tmp_path / "data")
    _jpeg(root / "images" / "img04.jpg", 4, size=(200, 200))
    datamodule = CaptionDataModule(FolderSource(str(root), on_error="skip"), max_image_pixels=10_000)
    datamodule.prepare()
    assert [r.image_id for r in datamodule.records["train"]].count("img04.jpg") == 0
    assert any("1 unreadable image" in line for line in datamodule.report)
    with pytest.raises(UserError, match="img04.jpg has more pixels than data.max_image_pixels=10000"):
        CaptionDataModule(FolderSource(str(root)), max_image_pixels=10_000).prepare()
    set_max_image_pixels(89_478_485)
    run_dir = tiny_run[0]
    result = run_cli(
        "caption.py",
        f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}",
        f"images={root / 'images'}",
        "max_image_pixels=10000",
        f"hydra.run.dir={tmp_path / 'captions'}",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    captions = json.loads((tmp_path / "captions" / "captions.json").read_text())
    assert len(captions) == 15 and "img04.jpg" not in " ".join(c["image"] for c in captions)
    assert "skipped 1 (not readable images)" in result.stdout + result.stderr


# ---- byte-order marks --------------------------------------------------------------------------------
BOM = "\ufeff"


def test_byte_order_marks_are_ignored_in_every_text_format(tmp_path):
    from captionlab.data.coco import CocoSource
    from captionlab.data.flickr8k import Flickr8kSource
    from captionlab.data.karpathy import KarpathySource

    names = [f"{i}_x.jpg" for i in range(3)]
    flickr = tmp_path / "flickr"
    for i, name in enumerate(names):
        _jpeg(flickr / "Images" / name, i)
    (flickr / "Flickr8k.token.txt").write_text(
        BOM + "\n".join(f"{n}#{k}\tA dog {k} ." for n in names for k in range(5)) + "\n", encoding="utf-8"
    )
    for split, name in zip(("train", "dev", "test"), names):
        (flickr / f"Flickr_8k.{split}Images.txt").write_text(BOM + name + "\n", encoding="utf-8")
    records = Flickr8kSource(str(flickr)).load()
    assert [len(records[s]) for s in ("train", "val", "test")] == [1, 1, 1]
    assert all(len(r.captions) == 5 for split in records.values() for r in split)

    folder = _folder_dataset(tmp_path / "folder")
    (folder / "captions.csv").write_text(BOM + (folder / "captions.csv").read_text(), encoding="utf-8")
    assert len(FolderSource(str(folder)).load()["train"]) == 10

    karpathy = tmp_path / "karpathy"
    _jpeg(karpathy / names[0], 0)
    entry = {"filename": names[0], "split": "train", "sentences": [{"raw": "A dog ."}]}
    (karpathy / "dataset.json").write_text(BOM + json.dumps({"images": [entry]}), encoding="utf-8")
    assert len(KarpathySource(str(karpathy), "dataset.json").load()["train"]) == 1

    coco = tmp_path / "coco"
    _jpeg(coco / "train2017" / "000000000001.jpg", 0)
    (coco / "annotations").mkdir()
    data = {
        "images": [{"id": 1, "file_name": "000000000001.jpg"}],
        "annotations": [{"image_id": 1, "caption": "A dog."}],
    }
    (coco / "annotations" / "captions_train2017.json").write_text(BOM + json.dumps(data), encoding="utf-8")
    (coco / "annotations" / "captions_val2017.json").write_text(BOM + json.dumps(data), encoding="utf-8")
    (coco / "val2017").mkdir()
    shutil.copy(coco / "train2017" / "000000000001.jpg", coco / "val2017")
    assert len(CocoSource(str(coco)).load()["train"]) == 1


# ---- results files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("caption", [None, ["a", "man"], 3, {"text": "a man"}])
def test_a_results_file_caption_must_be_a_string(tmp_path, caption):
    from captionlab.data.results_file import read_results_file

    entries = [{"image_id": "a.jpg", "caption": "a man"}, {"image_id": "b.jpg", "caption": caption}]
    (tmp_path / "results.json").write_text(BOM + json.dumps(entries), encoding="utf-8")
    with pytest.raises(UserError, match=r"entry 1 \(image_id 'b.jpg'\) has a caption that is not a string"):
        read_results_file(tmp_path / "results.json", {"a.jpg": ["x"], "b.jpg": ["y"]})


# ---- the same image in two splits ------------------------------------------------------------------
def test_split_overlaps_are_reported_and_refused_for_test(tmp_path):
    root = _folder_dataset(tmp_path / "data")

    class Two:
        """train/val/test records where two train images are also in val and test."""

        def __init__(self):
            self.inner = FolderSource(str(root))
            self.problems = self.inner.problems

        def load(self):
            records = self.inner.load()
            records["val"].append(records["train"][0])
            records["test"].append(records["train"][1])
            return records

    with pytest.raises(
        UserError, match="1 images are in both train and test .*data.allow_split_overlap=true"
    ):
        CaptionDataModule(Two()).prepare()
    datamodule = CaptionDataModule(Two(), allow_split_overlap=True)
    datamodule.prepare()
    report = " ".join(datamodule.report)
    assert "1 images are in both train and val (e.g. img00.jpg)" in report
    assert "1 images are in both train and test (e.g. img01.jpg)" in report


# ---- init_from a checkpoint made on other data --------------------------------------------------------
def test_init_from_on_other_data_reports_coverage_and_refuses(tiny_run, tmp_path, cache_dir):
    from captionlab.pipelines.train import run_training
    from captionlab.systems.loading import load_system

    root = _folder_dataset(tmp_path / "data", captions=("a tabby kitten sleeping", "grey kitten on sofa"))
    best = tiny_run[0] / "checkpoints" / "best.ckpt"
    overrides = _folder_overrides(root, tmp_path, cache_dir, f"init_from={best}", "loss=xe")
    with pytest.raises(UserError, match=r"its vocabulary covers only \d+\.\d% of the words of data=folder"):
        run_training(compose(overrides))
    assert not (tmp_path / "run" / "vocab.json").exists()
    datamodule = CaptionDataModule(FolderSource(str(root)), vocab=load_system(best).vocab)
    datamodule.prepare()
    assert 0 < datamodule.vocab_coverage < 0.5
    assert any("vocabulary" in line and "the model's; it covers" in line for line in datamodule.report)


# ---- option values, Trainer arguments, search hints ----------------------------------------------------
@pytest.mark.parametrize(
    "override,message",
    [
        ("trainer.max_epochs=abc", "trainer.max_epochs='abc': give a whole number >= -1"),
        ("seed=-1", "seed=-1: give a whole number from 0 to 4294967295"),
        ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches=0: give a whole number >= 1"),
    ],
)
def test_bad_run_options_are_one_line(override, message):
    from captionlab.pipelines.train import check_run_options

    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_run_options(compose([override]))


@pytest.mark.parametrize(
    "option,value",
    [
        ("batch_size", 0),
        ("eval_batch_size", -3),
        ("num_workers", -1),
        ("max_caption_len", 0),
        ("captions_per_image", 0),
        ("min_word_count", "x"),
    ],
)
def test_bad_data_options_are_one_line(option, value):
    with pytest.raises(UserError, match=f"data.{option}={value!r}: give a whole number"):
        CaptionDataModule(None, **{option: value})


def test_common_trainer_arguments_need_no_plus(tmp_path):
    from captionlab.registry import build

    cfg = compose(
        [
            "trainer.fast_dev_run=true",
            "trainer.limit_train_batches=10",
            "trainer.val_check_interval=0.5",
            "trainer.accumulate_grad_batches=2",
            "trainer.max_steps=7",
            "trainer.deterministic=true",
        ]
    )
    assert cfg.trainer.fast_dev_run is True and cfg.trainer.limit_train_batches == 10
    trainer = build(
        compose([f"paths.output_dir={tmp_path}"]).trainer, "trainer", logger=False, enable_checkpointing=False
    )
    assert trainer.limit_train_batches == 1.0 and trainer.max_steps == -1


def test_a_run_limited_to_no_val_batches_ends_without_val_scores(tmp_path, cache_dir, caplog):
    """`trainer.limit_val_batches=0` (timing a few training batches) used to end in a KeyError."""
    from captionlab.pipelines.train import run_training

    overrides = TINY_OVERRIDES + [
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=0",
        "test=false",
        f"paths.output_dir={tmp_path}",
        f"paths.cache_dir={cache_dir}",
    ]
    summary = run_training(compose(overrides))
    assert "val" not in summary and not (tmp_path / "predictions_val.json").exists()
    assert "val: no batches scored (trainer.limit_val_batches=0?)" in caplog.text


def test_a_search_setting_without_its_option_says_which_option():
    for args in (["search.num_beams=5"], ["+search.num_beams=5"]):
        result = run_cli("train.py", *args)
        assert result.returncode == 2
        assert result.stderr.strip() == (
            "error: search.num_beams is a setting of search=beam, not of the search option "
            "chosen: choose it first, e.g. search=beam search.num_beams=..."
        )
    result = run_cli("train.py", "data=folder", "data.source.num_train=5")
    assert result.stderr.strip().startswith(
        "error: data.source.num_train is a setting of data=shapes, not of"
    )


def test_an_added_key_is_checked_against_the_option_chosen():
    """`+trainer.limit_test_batches=2` was refused as 'a setting of trainer=default, not of the
    trainer option chosen' while trainer=default was the one chosen."""
    from captionlab.cli import CONF_DIR, check_group_overrides

    check_group_overrides(CONF_DIR, "evaluate", ["+trainer.limit_test_batches=2"])
    check_group_overrides(CONF_DIR, "train", ["search=beam", "+search.num_beams=5"])
    # chosen by an experiment: flickr8k_updown's data=flickr8k has data.root
    check_group_overrides(CONF_DIR, "train", ["experiment=flickr8k_updown", "+data.root=x"])
    with pytest.raises(UserError, match="setting of data=.*, not of the data option chosen"):
        check_group_overrides(CONF_DIR, "train", ["+data.root=x"])


def test_a_text_file_as_checkpoint_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello\n")
    result = run_cli(
        "evaluate.py", f"ckpt_path={tmp_path / 'notes.txt'}", f"hydra.run.dir={tmp_path / 'eval'}"
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: cannot read checkpoint {tmp_path / 'notes.txt'}")
    )


# ---- malformed annotation entries ----------------------------------------------------------------------
def test_malformed_karpathy_and_coco_entries_are_named_and_skippable(tmp_path):
    from captionlab.data.coco import CocoSource
    from captionlab.data.karpathy import KarpathySource

    _jpeg(tmp_path / "k" / "a.jpg", 0)
    images = [
        {"filename": "a.jpg", "split": "train", "sentences": [{"raw": "a dog"}]},
        {"split": "train", "sentences": [{"raw": "no file name"}]},
    ]
    (tmp_path / "k" / "dataset.json").write_text(json.dumps({"images": images}))
    with pytest.raises(UserError, match=r"dataset.json: images\[1\]: an image entry needs 'filename'"):
        KarpathySource(str(tmp_path / "k"), "dataset.json").load()
    source = KarpathySource(str(tmp_path / "k"), "dataset.json", on_error="skip")
    assert len(source.load()["train"]) == 1 and "1 malformed entry" in " ".join(source.problems.summary())

    coco = tmp_path / "coco"
    for split in ("train2017", "val2017"):
        _jpeg(coco / split / "000000000001.jpg", 0)
    (coco / "annotations").mkdir()
    data = {
        "images": [{"id": 1, "file_name": "000000000001.jpg"}],
        "annotations": [{"image_id": 1, "caption": "A dog."}, {"caption": "no image id"}],
    }
    for split in ("train2017", "val2017"):
        (coco / "annotations" / f"captions_{split}.json").write_text(json.dumps(data))
    with pytest.raises(
        UserError, match=r"captions_train2017.json: annotations\[1\]: an annotation needs 'image_id'"
    ):
        CocoSource(str(coco)).load()
    assert len(CocoSource(str(coco), on_error="skip").load()["val"]) == 1


# ---- one line per epoch, comparison tables --------------------------------------------------------------
def test_one_log_line_per_epoch():
    from captionlab.training.callbacks import epoch_line

    row = {
        "epoch": 2,
        "train/loss": 1.23456,
        "val/bleu4": 0.5021,
        "val/cider": 1.7129,
        "time/train_s": 44.6,
        "time/val_s": 3.2,
    }
    assert (
        epoch_line(row, 6) == "epoch 3/6: train/loss 1.2346, val BLEU-4 50.21, CIDEr 171.29, 45 s (+3 s val)"
    )
    assert epoch_line({"epoch": 0, "time/train_s": 1.0, "time/val_s": 0.0}, -1) == "epoch 1: 1 s (+0 s val)"
