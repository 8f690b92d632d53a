"""compare_runs' pooling: training seeds by default, or evaluate.py runs of several checkpoints."""

import json
import statistics

import yaml

from captionlab.compare import write_report


def _eval_run(folder, ckpt, beams, cider):
    (folder / ".hydra").mkdir(parents=True)
    config = {"ckpt_path": ckpt, "split": "test", "search": {"num_beams": beams}}
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.json").write_text(json.dumps({"test": {"cider": cider, "bleu4": cider / 2}}))


def test_evaluate_runs_of_several_checkpoints_pool_into_mean_and_std(tmp_path):
    scores = {"a.ckpt": 0.50, "b.ckpt": 0.52, "c.ckpt": 0.55}
    for number, (ckpt, cider) in enumerate(scores.items()):
        _eval_run(tmp_path / "sweep" / str(number), ckpt, 3, cider)
        _eval_run(tmp_path / "sweep" / str(number + 3), ckpt, 5, cider - 0.01)

    pooled = write_report(tmp_path / "sweep", tmp_path / "pooled", pooled=("ckpt_path",))
    rows = [line for line in pooled.splitlines() if line.startswith("| 3 ") or line.startswith("| 5 ")]
    assert len(rows) == 2 and all("(n=3)" in row for row in rows)
    mean, std = statistics.fmean(scores.values()), statistics.stdev(scores.values())
    assert f"{100 * mean:.2f} ± {100 * std:.2f} (n=3)" in next(r for r in rows if r.startswith("| 3 "))

    separate = write_report(tmp_path / "sweep", tmp_path / "separate")  # default: pool seeds only
    assert "ckpt_path" in separate and "(n=" not in separate
