"""Every dataset format, written by the tests in its exact published layout (quirks included),
and every bad-data case in both on_error modes."""

import json

import pytest
from conftest import SHARED, needs_shared
from PIL import Image

from captionlab.data.coco import CocoSource
from captionlab.data.flickr8k import Flickr8kSource
from captionlab.data.folder import FolderSource
from captionlab.data.karpathy import KarpathySource
from captionlab.errors import UserError

NAMES = [f"{1000 + i}_abc.jpg" for i in range(8)]


def _image(path, colour=(200, 30, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), colour).save(path)


def _flickr8k_official(root, image_dir="Flicker8k_Dataset"):
    for name in NAMES:
        _image(root / image_dir / name)
    lines = [f"{n}#{k}\tA dog runs number {k} ." for n in NAMES for k in range(5)]
    lines += [f"2258277193_586949ec62.jpg.1#{k}\tA quirk line ." for k in range(5)]
    (root / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n")
    (root / "Flickr_8k.trainImages.txt").write_text("\n".join(NAMES[:5]) + "\n")
    (root / "Flickr_8k.devImages.txt").write_text(NAMES[5] + "\n")
    (root / "Flickr_8k.testImages.txt").write_text(NAMES[6] + "\n")  # NAMES[7]: in no list
    return root


def test_flickr8k_official_layout(tmp_path):
    source = Flickr8kSource(str(_flickr8k_official(tmp_path)))
    records = source.load()
    assert [len(records[s]) for s in ("train", "val", "test")] == [5, 1, 1]
    record = records["train"][0]
    assert record.image_id == NAMES[0] and len(record.captions) == 5 and record.split == "train"
    summary = " ".join(source.problems.summary())
    assert "2258277193_586949ec62.jpg.1" in summary and "1 captioned images are in no split list" in summary


def test_flickr8k_kaggle_layout(tmp_path):
    for name in NAMES:
        _image(tmp_path / "Images" / name)
    rows = ["image,caption"] + [f'{n},"A dog, running {k}"' for n in NAMES for k in range(5)]
    (tmp_path / "captions.txt").write_text("\n".join(rows) + "\n")
    source = Flickr8kSource(str(tmp_path))
    records = source.load()
    assert sum(len(v) for v in records.values()) == 8
    assert records["train"][0].captions[0].startswith("A dog, running")
    assert "seeded split" in " ".join(source.problems.summary())


def test_flickr8k_errors_name_what_was_looked_for(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        Flickr8kSource(str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="needs data.root"):
        Flickr8kSource(None)
    (tmp_path / "Images").mkdir()
    with pytest.raises(UserError, match="neither Flickr8k.token.txt"):
        Flickr8kSource(str(tmp_path)).load()


@pytest.mark.parametrize(
    "case", ["malformed line", "empty caption", "missing image", "corrupt image", "unlisted caption"]
)
def test_flickr8k_bad_data_raise_and_skip(tmp_path, case):
    root = _flickr8k_official(tmp_path)
    token = root / "Flickr8k.token.txt"
    if case == "malformed line":
        token.write_text(token.read_text() + "this line has no tab\n")
    elif case == "empty caption":
        token.write_text(token.read_text() + f"{NAMES[0]}#5\t   \n")
    elif case == "missing image":
        (root / "Flicker8k_Dataset" / NAMES[1]).unlink()
    elif case == "corrupt image":
        (root / "Flicker8k_Dataset" / NAMES[1]).write_bytes(b"not a jpeg")
    elif case == "unlisted caption":
        (root / "Flickr_8k.trainImages.txt").write_text("\n".join(NAMES[:5] + ["9999_nocaption.jpg"]) + "\n")
    with pytest.raises(UserError) as error:
        Flickr8kSource(str(root)).load()
    assert "on_error=skip" in str(error.value) and "\n" not in str(error.value)
    source = Flickr8kSource(str(root), on_error="skip")
    records = source.load()
    summary = source.problems.summary()
    assert any("skipped 1 items" in line for line in summary), summary
    expected_train = 4 if case in ("missing image", "corrupt image") else 5
    assert len(records["train"]) == expected_train


def test_flickr8k_missing_split_list(tmp_path):
    root = _flickr8k_official(tmp_path)
    (root / "Flickr_8k.testImages.txt").unlink()
    with pytest.raises(UserError, match="Flickr_8k.testImages.txt"):
        Flickr8kSource(str(root)).load()


def _karpathy(root, name="dataset_flickr8k.json"):
    images = []
    for i, n in enumerate(NAMES):
        _image(root / "imgs" / n)
        split = ["train", "train", "restval", "val", "test", "train", "val", "test"][i]
        images.append(
            {
                "filename": n,
                "filepath": "",
                "split": split,
                "imgid": i,
                "sentences": [{"raw": f"A cat {k} .", "tokens": ["a", "cat"]} for k in range(5)],
            }
        )
    (root / name).write_text(json.dumps({"images": images, "dataset": "flickr8k"}))
    return root


def test_karpathy_with_and_without_restval(tmp_path):
    root = _karpathy(tmp_path)
    records = KarpathySource(str(root), "dataset_flickr8k.json", "imgs", use_restval=True).load()
    assert [len(records[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    records = KarpathySource(str(root), "dataset_flickr8k.json", "imgs", use_restval=False).load()
    assert len(records["train"]) == 3
    assert records["val"][0].image_id == NAMES[3]


def test_karpathy_coco_ids_and_bad_entries(tmp_path):
    root = _karpathy(tmp_path, "dataset_coco.json")
    data = json.loads((root / "dataset_coco.json").read_text())
    for i, entry in enumerate(data["images"]):
        entry["cocoid"] = 500 + i
    data["images"][0]["sentences"] = []
    (root / "dataset_coco.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match="no caption"):
        KarpathySource(str(root), "dataset_coco.json", "imgs").load()
    source = KarpathySource(str(root), "dataset_coco.json", "imgs", on_error="skip")
    records = source.load()
    assert records["val"][0].image_id == 503 and len(records["train"]) == 3
    (root / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="not a Karpathy split file"):
        KarpathySource(str(root), "broken.json", "imgs").load()


def _coco(root, year=2017):
    (root / "annotations").mkdir(parents=True)
    for split, ids in (("train", [1, 2, 3]), ("val", [4, 5])):
        images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 40, "height": 30} for i in ids]
        for i in ids:
            _image(root / f"{split}{year}" / f"{i:012d}.jpg")
        annotations = [
            {"id": 10 * i + k, "image_id": i, "caption": f"A plate of food {k}."}
            for i in ids
            for k in range(5)
        ]
        (root / "annotations" / f"captions_{split}{year}.json").write_text(
            json.dumps({"info": {}, "licenses": [], "images": images, "annotations": annotations})
        )
    return root


def test_coco_official_files_and_no_test_split(tmp_path):
    source = CocoSource(str(_coco(tmp_path)))
    records = source.load()
    assert [len(records[s]) for s in ("train", "val", "test")] == [3, 2, 0]
    assert records["val"][0].image_id == 4 and isinstance(records["val"][0].image_id, int)
    assert "no public test captions" in " ".join(source.problems.summary())


def test_coco_missing_annotation_file(tmp_path):
    root = _coco(tmp_path)
    (root / "annotations" / "captions_val2017.json").unlink()
    with pytest.raises(UserError, match="captions_val2017.json"):
        CocoSource(str(root)).load()


def test_folder_csv_with_and_without_split(tmp_path):
    for n in NAMES:
        _image(tmp_path / "images" / n)
    rows = ["image,caption,split"] + [
        f"{n},a red box {k},{'train' if i < 6 else 'dev'}" for i, n in enumerate(NAMES) for k in range(2)
    ]
    (tmp_path / "captions.csv").write_text("\n".join(rows) + "\n")
    records = FolderSource(str(tmp_path)).load()
    assert [len(records[s]) for s in ("train", "val", "test")] == [6, 2, 0]
    assert records["train"][0].captions == ("a red box 0", "a red box 1")
    rows = ["image,caption"] + [f"{n},a red box" for n in NAMES]
    (tmp_path / "nosplit.csv").write_text("\n".join(rows) + "\n")
    source = FolderSource(str(tmp_path), annotations="nosplit.csv", split_ratios=(0.5, 0.25, 0.25))
    records = source.load()
    assert [len(records[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    assert (
        FolderSource(str(tmp_path), annotations="nosplit.csv", split_ratios=(0.5, 0.25, 0.25)).load()
        == records
    )


def test_folder_jsonl_bad_rows(tmp_path):
    for n in NAMES[:3]:
        _image(tmp_path / "images" / n)
    lines = [json.dumps({"image": n, "caption": "a box", "split": "train"}) for n in NAMES[:3]]
    lines += [
        "{broken",
        json.dumps({"image": "missing.jpg", "caption": "x"}),
        json.dumps({"image": NAMES[0], "caption": ""}),
    ]
    (tmp_path / "rows.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match="rows.jsonl:4"):
        FolderSource(str(tmp_path), annotations="rows.jsonl").load()
    source = FolderSource(str(tmp_path), annotations="rows.jsonl", on_error="skip")
    records = source.load()
    assert len(records["train"]) == 3
    summary = " ".join(source.problems.summary())
    assert "skipped 3 items" in summary and "1 empty caption" in summary and "1 missing image" in summary


@needs_shared
@pytest.mark.parametrize(
    "folder,counts,captions",
    [
        ("flickr8k_subset", (753, 113, 125), 5000),
        ("flickr8k_224", (6000, 1000, 1000), 40455),
    ],
)
def test_shared_flickr8k(folder, counts, captions):
    source = Flickr8kSource(str(SHARED / "data" / folder))
    records = source.load()
    assert tuple(len(records[s]) for s in ("train", "val", "test")) == counts
    parsed = sum(
        1
        for line in (SHARED / "data" / folder / "Flickr8k.token.txt").read_text().splitlines()
        if line.strip() and not line.startswith("2258277193_586949ec62.jpg.1")
    )
    assert parsed == captions


@needs_shared
def test_shared_coco_mini():
    records = CocoSource(str(SHARED / "data" / "coco_captions_mini")).load()
    assert (len(records["train"]), len(records["val"]), len(records["test"])) == (80, 159, 0)
    assert all(len(r.captions) == 5 for r in records["val"])


def test_training_on_coco_without_test_captions_skips_the_test_stage(tmp_path, cache_dir):
    from conftest import TINY_OVERRIDES, compose

    from captionlab.pipelines.train import run_training

    root = _coco(tmp_path / "coco")
    overrides = [o for o in TINY_OVERRIDES if not o.startswith("data.")] + [
        "data=coco",
        f"data.root={root}",
        "data.image_size=64",
        "data.min_word_count=1",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        f"paths.output_dir={tmp_path / 'run'}",
        f"paths.cache_dir={cache_dir}",
    ]
    summary = run_training(compose(overrides))
    assert "test" not in summary and summary["val"]["num_images"] == 2
    assert not (tmp_path / "run" / "predictions_test.json").exists()
    predictions = json.loads((tmp_path / "run" / "predictions_val.json").read_text())
    assert sorted(p["image_id"] for p in predictions) == [4, 5]
