"""Two CPU processes (gloo): one run folder, and validation scores over the whole split that equal a
single-process evaluation of the same checkpoint."""

import json

import pytest
from conftest import run_cli

SMALL = [
    "data.source.num_train=64",
    "data.source.num_val=21",
    "data.source.num_test=16",
    "data.batch_size=8",
    "data.eval_batch_size=4",
    "trainer.max_epochs=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "metrics.meteor_final=false",
    "test=false",
    "logger=none",
    "decoder.hidden_dim=32",
    "decoder.embed_dim=16",
    "optim.optimizer.lr=5e-3",
]


@pytest.mark.slow
def test_two_cpu_processes_write_one_run_folder_with_whole_split_scores(tmp_path):
    run = tmp_path / "run"
    env = {"OMP_NUM_THREADS": "1"}
    result = run_cli(
        "train.py",
        "trainer=ddp_cpu",
        *SMALL,
        f"hydra.run.dir={run}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "run"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val"]["num_images"] == 21  # 21 images over 2 processes: padded, gathered, de-duplicated
    predictions = json.loads((run / "predictions_val.json").read_text())
    assert len(predictions) == 21 and len({p["image_id"] for p in predictions}) == 21
    assert len((run / "history.jsonl").read_text().splitlines()) == 1

    single = run_cli(
        "evaluate.py",
        f"ckpt_path={run / 'checkpoints' / 'best.ckpt'}",
        "split=val",
        "metrics.meteor=false",
        "trainer.enable_progress_bar=false",
        f"hydra.run.dir={tmp_path / 'eval'}",
        env=env,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    alone = json.loads((tmp_path / "eval" / "metrics.json").read_text())["val"]
    for name in ("bleu1", "bleu4", "rouge_l", "cider"):
        assert metrics["val"][name] == pytest.approx(alone[name], abs=1e-12), name


@pytest.mark.slow
def test_a_model_without_gradients_is_refused_by_multi_process_training(tmp_path):
    result = run_cli(
        "train.py",
        "trainer=ddp_cpu",
        "model=knn",
        *SMALL,
        f"hydra.run.dir={tmp_path / 'run'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert result.returncode != 0 and "train it in one process" in result.stderr
