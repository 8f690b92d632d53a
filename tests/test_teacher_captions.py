"""data.teacher_captions: a teacher's captions of the train images, trained on as one more caption
each (sequence-level distillation), and evaluate.py split=train, which writes them."""

import json

import pytest
from conftest import SHAPES_PREPROCESSING, evaluate_checkpoint

from captionlab.data.datamodule import CaptionDataModule
from captionlab.data.shapes import ShapesSource
from captionlab.errors import UserError


def _datamodule(cache_dir, **options) -> CaptionDataModule:
    datamodule = CaptionDataModule(
        ShapesSource(str(cache_dir), num_train=6, num_val=2, num_test=2), **options
    )
    datamodule.prepare()
    datamodule.set_preprocessing(SHAPES_PREPROCESSING)
    return datamodule


def _write(path, entries) -> str:
    path.write_text(json.dumps(entries))
    return str(path)


def test_each_teacher_caption_is_one_more_training_caption_of_its_image(cache_dir, tmp_path):
    plain = _datamodule(cache_dir)
    train = plain.split("train")
    teacher = {train[0].image_id: "a teacher caption", train[3].image_id: train[1].captions[0]}
    path = _write(tmp_path / "teacher.json", [{"image_id": i, "caption": c} for i, c in teacher.items()])
    datamodule = _datamodule(cache_dir, teacher_captions=path)

    records = datamodule.training_records()
    for record, original in zip(records, train):
        extra = (teacher[original.image_id],) if original.image_id in teacher else ()
        assert record.captions == (*original.captions, *extra)
    assert datamodule.training_records() is records  # read once
    assert datamodule.split("train") == train  # the references that are scored stay the dataset's
    assert datamodule.vocab.words == plain.vocab.words
    assert "trained on 2 teacher captions" in " ".join(datamodule.report)
    assert "4 of the 6 train images have none" in " ".join(datamodule.report)

    datamodule.captions_per_image = len(train[0].captions) + 1  # every caption, every epoch
    served = datamodule.train_dataloader().dataset[3]["tokens"]
    assert any(
        t.tolist() == datamodule.vocab.encode(teacher[train[3].image_id], datamodule.max_caption_len)
        for t in served
    )


def test_evaluating_a_student_does_not_need_the_teacher_file(cache_dir, tmp_path):
    datamodule = _datamodule(cache_dir, teacher_captions=str(tmp_path / "gone.json"))
    assert len(datamodule.split("val")) == 2  # what evaluate.py and caption.py use
    with pytest.raises(UserError, match=r"data.teacher_captions file not found: .*gone.json"):
        datamodule.training_records()


def test_captions_of_images_outside_the_train_split_are_refused(cache_dir, tmp_path):
    val_image = _datamodule(cache_dir).split("val")[0].image_id
    path = _write(tmp_path / "teacher.json", [{"image_id": val_image, "caption": "a caption"}])
    with pytest.raises(UserError, match=r"1 image ids are not in the train split of data=.*split=train"):
        _datamodule(cache_dir, teacher_captions=path).training_records()


def test_evaluate_on_the_train_split_writes_a_teacher_file(tiny_run, tmp_path):
    run, cfg, _ = tiny_run
    result = evaluate_checkpoint(run / "checkpoints" / "best.ckpt", tmp_path, "split=train")
    assert {"bleu4", "cider"} <= set(result["train"])
    teacher = tmp_path / "predictions_train.json"
    source = ShapesSource(str(cfg.data.source.cache_dir), num_train=240, num_val=40, num_test=40)
    datamodule = CaptionDataModule(source, teacher_captions=str(teacher))
    records = datamodule.training_records()
    assert len(json.loads(teacher.read_text())) == len(records)
    assert all(len(r.captions) == len(o.captions) + 1 for r, o in zip(records, datamodule.split("train")))
