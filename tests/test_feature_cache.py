"""The feature cache: hit, miss, invalidation, and training from cached features."""

import os
import shutil

import pytest
import torch

from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.shapes import ShapesSource
from captionlab.errors import UserError
from captionlab.features import use_cached_features
from captionlab.features.cache import cache_key, weights_digest
from captionlab.models.encoders import EncoderSet, TimmEncoder
from captionlab.types import CaptionRecord


def _datamodule(cache_dir, tmp_path, **kwargs):
    source = ShapesSource(str(cache_dir), num_train=24, num_val=8, num_test=8)
    return CaptionDataModule(
        source,
        image_size=64,
        batch_size=8,
        eval_batch_size=8,
        feature_cache_dir=str(tmp_path / "features"),
        **kwargs,
    )


def _encoder(**kwargs):
    torch.manual_seed(0)
    return TimmEncoder("resnet10t", input_size=64, crop=False, freeze="all", **kwargs)


def _folders(tmp_path):
    return sorted(p.name for p in (tmp_path / "features").iterdir() if p.is_dir())  # not the <key>.lock files


def test_miss_then_hit_then_invalidation(cache_dir, tmp_path):
    encoder = _encoder()
    datamodule = _datamodule(cache_dir, tmp_path)
    datamodule.set_preprocessing(encoder.preprocessing)
    assert use_cached_features(datamodule, encoder)
    (key,) = _folders(tmp_path)
    meta = tmp_path / "features" / key / "meta.json"
    stamp = meta.stat().st_mtime_ns
    features = datamodule.features["val"]
    assert features.pooled.shape == (8, encoder.feature_dim) and features.grid.shape == (
        8,
        4,
        encoder.feature_dim,
    )
    assert features.pooled.dtype.name == "float16"

    # the cached features equal a fresh forward pass (to fp16 precision)
    plain = _datamodule(cache_dir, tmp_path, cache_features=False)
    plain.set_preprocessing(encoder.preprocessing)
    images = next(iter(plain.eval_dataloader("val")))["image"]
    with torch.no_grad():
        expected = encoder.eval()(images).pooled
    torch.testing.assert_close(
        torch.from_numpy(features.pooled[:8].astype("float32")), expected, atol=2e-2, rtol=1e-2
    )

    again = _datamodule(cache_dir, tmp_path)
    again.set_preprocessing(encoder.preprocessing)
    assert use_cached_features(again, encoder)
    assert meta.stat().st_mtime_ns == stamp and _folders(tmp_path) == [key]

    other_weights = _encoder()
    with torch.no_grad():
        next(other_weights.parameters()).add_(1.0)
    use_cached_features(again, other_weights)
    assert len(_folders(tmp_path)) == 2

    bigger = _encoder()
    bigger.preprocessing = {**bigger.preprocessing, "input_size": [3, 72, 72]}
    resized = _datamodule(cache_dir, tmp_path)
    resized.set_preprocessing(bigger.preprocessing)
    use_cached_features(resized, bigger)
    assert len(_folders(tmp_path)) == 3


def test_grid_options_get_their_own_cache_and_the_default_keeps_its_key(cache_dir, tmp_path):
    datamodule = _datamodule(cache_dir, tmp_path)
    encoder = _encoder()
    datamodule.set_preprocessing(encoder.preprocessing)
    use_cached_features(datamodule, encoder)
    weights = weights_digest(encoder.model)
    assert _folders(tmp_path) == [cache_key(encoder.name, weights, encoder.preprocessing, datamodule.records)]
    for options in ({"grid_size": 1}, {"zero_features": True}, {"feature_stage": [3, "final"]}):
        variant = _encoder(**options)
        use_cached_features(datamodule, variant)
        assert datamodule.features["val"].grid.shape[1:] == variant(torch.zeros(1, 3, 64, 64)).grid.shape[1:]
        assert datamodule.features["val"].grid[:].any() != options.get("zero_features", False)
    assert len(_folders(tmp_path)) == 4
    use_cached_features(datamodule, encoder)  # the plain encoder finds its own features again
    assert datamodule.features["val"].grid[:].any() and len(_folders(tmp_path)) == 4


def test_unfinished_extraction_is_redone(cache_dir, tmp_path):
    encoder = _encoder()
    datamodule = _datamodule(cache_dir, tmp_path)
    datamodule.set_preprocessing(encoder.preprocessing)
    use_cached_features(datamodule, encoder)
    (key,) = _folders(tmp_path)
    (tmp_path / "features" / key / "meta.json").unlink()
    (tmp_path / "features" / key / "train.grid.npy").write_bytes(b"half")
    use_cached_features(datamodule, encoder)
    assert (tmp_path / "features" / key / "meta.json").is_file()
    assert datamodule.features["train"].grid.shape[0] == 24


def test_trainable_encoder_uses_images(cache_dir, tmp_path):
    encoder = TimmEncoder("resnet10t", input_size=64, crop=False)
    datamodule = _datamodule(cache_dir, tmp_path)
    datamodule.set_preprocessing(encoder.preprocessing)
    assert not use_cached_features(datamodule, encoder)
    datamodule.prepare()
    batch = next(iter(datamodule.train_dataloader()))
    assert "image" in batch and "pooled" not in batch


def test_training_batches_come_from_the_cache(cache_dir, tmp_path):
    encoder = _encoder()
    datamodule = _datamodule(cache_dir, tmp_path)
    datamodule.set_preprocessing(encoder.preprocessing)
    use_cached_features(datamodule, encoder)
    batch = next(iter(datamodule.train_dataloader()))
    assert "image" not in batch and batch["pooled"].shape == (8, encoder.feature_dim)
    assert batch["tokens"].shape[:2] == (8, 5)


def test_key_follows_image_content_not_location_or_time(tmp_path):
    def records(folder):
        return {
            "train": [
                CaptionRecord(folder / name, name, "train", ("a caption",)) for name in ("a.jpg", "b.jpg")
            ]
        }

    first = tmp_path / "first"
    first.mkdir()
    (first / "a.jpg").write_bytes(bytes(range(256)) * 1000)  # larger than the two sampled ends
    (first / "b.jpg").write_bytes(b"small image")
    key = cache_key("enc", "w", {"input_size": [3, 8, 8]}, records(first))

    copy = tmp_path / "copy"
    shutil.copytree(first, copy)  # new path, new time stamps
    os.utime(copy / "a.jpg", (1, 1))
    assert cache_key("enc", "w", {"input_size": [3, 8, 8]}, records(copy)) == key

    (copy / "b.jpg").write_bytes(b"other image")
    assert cache_key("enc", "w", {"input_size": [3, 8, 8]}, records(copy)) != key


def test_hflip_caches_the_mirror_images_for_training_only(cache_dir, tmp_path):
    encoder = _encoder()
    evaluating = _datamodule(cache_dir, tmp_path, hflip=True)
    evaluating.set_preprocessing(encoder.preprocessing)
    use_cached_features(evaluating, encoder)  # evaluation reads no mirror images
    assert len(_folders(tmp_path)) == 1 and not evaluating.mirrored_features

    datamodule = _datamodule(cache_dir, tmp_path, hflip=True)
    datamodule.set_preprocessing(encoder.preprocessing)
    use_cached_features(datamodule, encoder, training=True)
    assert len(_folders(tmp_path)) == 2 and set(datamodule.mirrored_features) == {"train"}
    mirrored = datamodule.mirrored_features["train"]

    # the mirrored rows are the encoder's features of the flipped images
    plain = _datamodule(cache_dir, tmp_path, cache_features=False)
    plain.set_preprocessing(encoder.preprocessing)
    images = next(iter(plain.image_loader("train")))["image"]
    with torch.no_grad():
        expected = encoder.eval()(images.flip(-1)).pooled
    torch.testing.assert_close(
        torch.from_numpy(mirrored.pooled[:8].astype("float32")), expected, atol=2e-2, rtol=1e-2
    )
    assert not torch.allclose(
        torch.from_numpy(datamodule.features["train"].pooled[:8].astype("float32")), expected
    )

    batch = next(iter(datamodule.train_dataloader()))
    assert "image" not in batch and batch["pooled"].shape == (8, encoder.feature_dim)


def test_an_encoder_set_is_served_from_each_encoders_own_cache(cache_dir, tmp_path):
    plain, staged = _encoder(), _encoder(feature_stage=[3, "final"])
    alone = {}
    for encoder in (plain, staged):
        datamodule = _datamodule(cache_dir, tmp_path)
        datamodule.set_preprocessing(encoder.preprocessing)
        use_cached_features(datamodule, encoder)
        alone[encoder] = datamodule.features["val"]
    assert len(_folders(tmp_path)) == 2

    both = EncoderSet([plain, staged])
    datamodule = _datamodule(cache_dir, tmp_path)
    datamodule.set_preprocessing(both.preprocessing)
    use_cached_features(datamodule, both)
    assert len(_folders(tmp_path)) == 2  # found, not extracted again
    item = datamodule.features["val"][3]
    assert item["grid"].shape == (4, plain.feature_dim + staged.feature_dim)
    (_, plain_stop), (staged_start, _) = both.spans
    for kind in ("pooled", "grid"):
        assert torch.equal(item[kind][..., :plain_stop], alone[plain][3][kind])
        assert torch.equal(item[kind][..., staged_start:], alone[staged][3][kind])

    finer = EncoderSet([plain, _encoder(feature_stage=3)])  # 4 regions beside 16
    with pytest.raises(UserError, match="same number of regions"):
        use_cached_features(datamodule, finer)
    with pytest.raises(UserError, match="same number of regions"):
        finer(torch.zeros(1, 3, 64, 64))
