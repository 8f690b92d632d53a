"""encoder=precomputed: feature stores in three formats, variable region counts end to end, bad
entries, and the export script."""

import json

import numpy as np
import pytest
import torch
from conftest import TINY_OVERRIDES, compose, run_cli

from captionlab.data.datamodule import pad_regions
from captionlab.data.images import UnreadableImage
from captionlab.errors import UserError
from captionlab.features.precomputed import RegionFeatures, box_geometry, region_tensors
from captionlab.features.stores import FORMATS, FeatureWriter, MissingFeatures, feature_key, open_store
from captionlab.pipelines.evaluate import run_evaluation
from captionlab.pipelines.train import run_training
from captionlab.registry import build
from captionlab.types import CaptionRecord

DIM = 16
STORE_NAME = {"npy": "regions", "hdf5": "regions.h5", "lmdb": "regions.lmdb"}


def _entry(rng, regions: int) -> dict[str, np.ndarray]:
    corners = rng.uniform(0, 32, size=(regions, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 32, size=(regions, 2))], axis=1)
    return {
        "features": rng.standard_normal((regions, DIM)).astype(np.float32),
        "boxes": boxes.astype(np.float32),
        "image_size": np.array([64, 64]),
    }


def _write(path, fmt, entries):
    writer = FeatureWriter(path, fmt)
    writer.write(entries)
    writer.close()
    return path


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_reads_back_what_was_written(tmp_path, fmt):
    rng = np.random.default_rng(0)
    entries = {f"img{i}": _entry(rng, 2 + i) for i in range(4)}
    store = open_store(_write(tmp_path / STORE_NAME[fmt], fmt, entries))
    assert store.format == fmt and sorted(store.keys()) == sorted(entries)
    for key, arrays in entries.items():
        read = store.read(key)
        assert sorted(read) == sorted(arrays)
        for name in arrays:
            np.testing.assert_array_equal(read[name], arrays[name])
    with pytest.raises(MissingFeatures, match="img9"):
        store.read("img9")
    store.close()
    writer = FeatureWriter(tmp_path / STORE_NAME[fmt], fmt)  # resuming sees what is there
    assert writer.done() == set(entries)
    writer.close()


def test_self_critical_layout_with_separate_pooled_and_box_folders(tmp_path):
    rng = np.random.default_rng(1)
    for folder in ("att", "fc", "box"):
        (tmp_path / folder).mkdir()
    regions = rng.standard_normal((5, DIM)).astype(np.float32)
    np.savez(tmp_path / "att" / "391895.npz", feat=regions)
    np.save(tmp_path / "fc" / "391895.npy", regions.max(0))
    np.save(tmp_path / "box" / "391895.npy", np.tile([0, 0, 10, 10], (5, 1)).astype(np.float32))
    store = open_store(tmp_path / "att", "npy", str(tmp_path / "fc"), str(tmp_path / "box"))
    arrays = store.read(feature_key(391895))
    np.testing.assert_array_equal(arrays["features"], regions)
    np.testing.assert_array_equal(arrays["pooled"], regions.max(0))
    assert arrays["boxes"].shape == (5, 4)
    with pytest.raises(UserError, match="format=npy only"):
        open_store(tmp_path / "x.h5", "hdf5", str(tmp_path / "fc"))


def test_keys_drop_image_suffixes():
    assert feature_key("1000268201_693b08cb0e.jpg") == "1000268201_693b08cb0e"
    assert feature_key(391895) == "391895" and feature_key("a.b") == "a.b"


def test_entries_become_pooled_and_grid_with_box_geometry():
    rng = np.random.default_rng(2)
    arrays = _entry(rng, 3)
    plain = region_tensors(arrays, DIM, False, "image x")
    assert plain["grid"].shape == (3, DIM)
    torch.testing.assert_close(plain["pooled"], torch.from_numpy(arrays["features"].mean(0)))
    boxed = region_tensors(arrays, DIM + 5, True, "image x")
    assert boxed["grid"].shape == (3, DIM + 5)
    geometry = box_geometry(np.array([[16.0, 0.0, 48.0, 32.0]]), np.array([64, 64]))
    np.testing.assert_allclose(geometry, [[0.25, 0.0, 0.75, 0.5, 0.25]])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.update(features=a["features"][:, :8]), "8-d features, but the model reads 16-d"),
        (lambda a: a.update(boxes=a["boxes"][:2]), "3 regions but boxes of shape"),
        (lambda a: a.pop("image_size"), "needs 'boxes' and 'image_size'"),
        (lambda a: a.update(pooled=np.zeros(4, np.float32)), "pooled vector of shape"),
    ],
)
def test_entries_that_do_not_fit_name_the_image_and_the_problem(change, message):
    arrays = _entry(np.random.default_rng(3), 3)
    change(arrays)
    with pytest.raises(UnreadableImage, match=message):
        region_tensors(arrays, DIM + 5, True, "image x")


def test_missing_and_truncated_entries_are_unreadable_images(tmp_path):
    rng = np.random.default_rng(4)
    folder = _write(tmp_path / "regions", "npy", {"a": _entry(rng, 2), "b": _entry(rng, 3)})
    (folder / "b.npz").write_bytes((folder / "b.npz").read_bytes()[:50])
    records = [CaptionRecord(tmp_path / f"{k}.png", f"{k}.png", "train", ("x",)) for k in "abc"]
    rows = RegionFeatures(open_store(folder), records, DIM, False)
    assert rows[0]["grid"].shape == (2, DIM)
    with pytest.raises(UnreadableImage, match="image 'b.png'.* unreadable"):
        rows[1]
    with pytest.raises(UnreadableImage, match="no features for image 'c'"):
        rows[2]


def test_padding_and_masks_only_when_region_counts_differ():
    same = pad_regions([torch.ones(4, 2), torch.ones(4, 2)])
    assert set(same) == {"grid"} and same["grid"].shape == (2, 4, 2)
    mixed = pad_regions([torch.ones(1, 2), torch.ones(3, 2)])
    assert mixed["grid"].shape == (2, 3, 2)
    assert mixed["grid_mask"].tolist() == [[True, False, False], [True, True, True]]
    assert mixed["grid"][0, 1:].abs().sum() == 0


# end to end on the shapes data with a synthetic region fixture ---------------------------------
@pytest.fixture(scope="module")
def region_store(tmp_path_factory):
    """Every shapes image of the tiny run gets 2-8 regions (with boxes) in an HDF5 file."""
    folder = tmp_path_factory.mktemp("regions")
    cfg = compose(TINY_OVERRIDES + [f"paths.output_dir={folder}"])
    datamodule = build(cfg.data, "data")
    datamodule.prepare()
    rng = np.random.default_rng(5)
    entries = {
        feature_key(r.image_id): _entry(rng, int(rng.integers(2, 9)))
        for split in ("train", "val", "test")
        for r in datamodule.split(split)
    }
    return _write(folder / "regions.h5", "hdf5", entries)


TINY_DECODERS = {
    "lstm": ["decoder.hidden_dim=16", "decoder.embed_dim=8"],
    "attention": ["decoder.hidden_dim=16", "decoder.embed_dim=8", "decoder.attention_dim=8"],
    "updown": ["decoder.hidden_dim=16", "decoder.embed_dim=8", "decoder.attention_dim=8"],
    "transformer": [
        "decoder.dim=16",
        "decoder.num_heads=2",
        "decoder.ff_dim=32",
        "decoder.num_layers=1",
        "decoder.num_encoder_layers=1",
    ],
}


def _precomputed_run(tmp_path, store, *overrides):
    """The tiny run on precomputed features (its decoder sizes unless others are given)."""
    own_decoder = any(o.startswith("decoder") for o in overrides)
    overrides = [o for o in TINY_OVERRIDES if not (own_decoder and o.startswith("decoder."))] + [
        "encoder=precomputed",
        f"encoder.path={store}",
        "trainer.max_epochs=1",
        f"paths.output_dir={tmp_path}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *overrides,
    ]
    return run_training(compose(overrides))


@pytest.mark.parametrize("decoder", TINY_DECODERS)
def test_every_decoder_trains_on_variable_region_sets_with_boxes(tmp_path, region_store, decoder):
    summary = _precomputed_run(
        tmp_path, region_store, f"decoder={decoder}", "encoder.box_features=true", *TINY_DECODERS[decoder]
    )
    assert summary["test"]["num_images"] == 40 and 0 <= summary["test"]["cider"]
    saved = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert saved["hyper_parameters"]["config"]["encoder"]["_target_"] == "encoder/precomputed"


def test_precomputed_checkpoint_evaluates_searches_and_refuses_pixels(tmp_path, region_store):
    _precomputed_run(tmp_path / "run", region_store, "decoder=attention", *TINY_DECODERS["attention"])
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    cfg = compose(
        [f"ckpt_path={best}", f"paths.output_dir={tmp_path / 'eval'}", "metrics.meteor=false"]
        + ["search=beam", "search.num_beams=3", "trainer.enable_progress_bar=false"],
        config_name="evaluate",
    )
    assert run_evaluation(cfg)["val"]["num_images"] == 40
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"not even a photo")
    result = run_cli(
        "caption.py", f"ckpt_path={best}", f"images={photo}", f"hydra.run.dir={tmp_path / 'cap'}"
    )
    assert result.returncode == 2 and "cannot extract regions from a new photo" in result.stderr
    ids = [
        json.loads((tmp_path / "eval" / "predictions_val.json").read_text())[i]["image_id"] for i in (0, 1)
    ]
    result = run_cli(
        "caption.py", f"ckpt_path={best}", f"images=[{ids[0]},{ids[1]}]", f"hydra.run.dir={tmp_path / 'cap'}"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(": ") >= 2 and ids[0] in result.stdout


def test_knn_reads_the_pooled_vectors(tmp_path, region_store):
    summary = _precomputed_run(tmp_path, region_store, "model=knn", "model.k=3")
    assert summary["test"]["num_images"] == 40


def test_a_missing_entry_is_an_error_or_a_counted_skip(tmp_path, region_store):
    import h5py

    broken = tmp_path / "broken.h5"
    broken.write_bytes(region_store.read_bytes())
    with h5py.File(broken, "a") as handle:
        victim = sorted(n for n in handle if n.endswith("_features"))[0][: -len("_features")]
        for name in list(handle):
            if name.startswith(f"{victim}_"):
                del handle[name]
    with pytest.raises(UserError, match=f"no features for image '{victim}"):
        _precomputed_run(tmp_path / "raise", broken)
    summary = _precomputed_run(tmp_path / "skip", broken, "data.on_error=skip")
    assert victim.startswith("test_") and summary["test"]["skipped_images"] == 1
    assert summary["test"]["num_images"] == 39


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_cache_trains_exactly_like_the_cache(tmp_path_factory, fmt, cached_run):
    """scripts/extract_features.py writes the cache's features; training on them gives the same scores."""
    cache_summary, cache_dir = cached_run
    folder = tmp_path_factory.mktemp(f"export_{fmt}")
    store = folder / STORE_NAME[fmt]
    result = run_cli(
        "scripts/extract_features.py",
        "--out",
        str(store),
        "--format",
        fmt,
        *TINY_OVERRIDES[:3],
        "encoder.freeze=all",
        f"paths.cache_dir={cache_dir}",
    )
    assert result.returncode == 0, result.stderr
    counts = [json.loads(line) for line in result.stdout.splitlines()]
    assert [c["written"] for c in counts] == [240, 40, 40]
    again = run_cli(
        "scripts/extract_features.py",
        *("--out", str(store), "--format", fmt),
        *TINY_OVERRIDES[:3],
        "encoder.freeze=all",
        f"paths.cache_dir={cache_dir}",
    )
    assert [json.loads(line)["present"] for line in again.stdout.splitlines()] == [240, 40, 40]
    summary = _precomputed_run(folder, store, "trainer.max_epochs=1")
    for split in ("val", "test"):
        for metric in ("bleu4", "cider"):
            assert summary[split][metric] == pytest.approx(cache_summary[split][metric], abs=1e-6)


@pytest.fixture(scope="module")
def cached_run(tmp_path_factory):
    """One epoch of the tiny model from the feature cache (the reference for the exports)."""
    folder = tmp_path_factory.mktemp("cached_run")
    cache_dir = folder / "cache"
    overrides = TINY_OVERRIDES + [
        "encoder.freeze=all",
        "trainer.max_epochs=1",
        f"paths.output_dir={folder}",
        f"paths.cache_dir={cache_dir}",
    ]
    return run_training(compose(overrides)), cache_dir


@pytest.mark.parametrize("fmt", FORMATS)
def test_loader_workers_open_their_own_handles(tmp_path, fmt):
    rng = np.random.default_rng(6)
    entries = {f"img{i}": _entry(rng, 1 + i % 4) for i in range(12)}
    store = open_store(_write(tmp_path / STORE_NAME[fmt], fmt, entries))
    store.read("img0")  # the parent holds a handle before the workers fork
    records = [CaptionRecord(tmp_path / f"{k}.png", k, "train", ("x",)) for k in entries]
    from captionlab.data.datamodule import collate

    loader = torch.utils.data.DataLoader(
        [{"index": i} for i in range(12)],
        batch_size=4,
        num_workers=2,
        collate_fn=lambda items: collate(
            [{**RegionFeatures(store, records, DIM, False)[it["index"]], **it} for it in items]
        ),
    )
    for _ in range(2):  # a second epoch forks new workers
        batches = list(loader)
        assert [int(m.sum()) for b in batches for m in b["grid_mask"]] == [1 + i % 4 for i in range(12)]
    np.testing.assert_array_equal(store.read("img5")["features"], entries["img5"]["features"])  # the parent's


def test_self_critical_training_on_region_sets(tmp_path, region_store):
    summary = _precomputed_run(
        tmp_path,
        region_store,
        "decoder=updown",
        *TINY_DECODERS["updown"],
        "loss=scst",
        "loss.sample_method=beam",
        "loss.num_samples=3",
        "trainer.limit_train_batches=3",
    )
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert "train/reward" in history[-1] and summary["test"]["num_images"] == 40


def test_box_geometry_takes_the_image_size_from_the_image_file_when_the_store_has_none(tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 32)).save(tmp_path / "photo.jpg")
    arrays = {"features": np.ones((1, DIM), np.float32), "boxes": np.array([[0.0, 0.0, 32.0, 16.0]])}
    _write(tmp_path / "regions", "npy", {"photo": arrays})
    record = CaptionRecord(tmp_path / "photo.jpg", "photo.jpg", "train", ("x",))
    grid = RegionFeatures(open_store(tmp_path / "regions"), [record], DIM + 5, True)[0]["grid"]
    torch.testing.assert_close(grid[0, DIM:], torch.tensor([0.0, 0.0, 0.5, 0.5, 0.25]))


@pytest.mark.slow
def test_two_processes_train_on_region_sets(tmp_path, region_store):
    result = run_cli(
        "train.py",
        "trainer=ddp_cpu",
        *[o for o in TINY_OVERRIDES if not o.startswith("decoder.")],
        "decoder=attention",
        *TINY_DECODERS["attention"],
        "encoder=precomputed",
        f"encoder.path={region_store}",
        "trainer.max_epochs=1",
        "test=false",
        "logger=none",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["val"]["num_images"] == 40
