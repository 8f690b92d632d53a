"""scripts/benchmark.py train_step: one JSON line per decoder and precision, with its timing."""

import json

from conftest import run_cli


def test_train_step_benchmark_times_each_decoder_in_both_precisions():
    result = run_cli(
        "scripts/benchmark.py",
        "train_step",
        *("--decoders", "attention", "transformer"),
        *("--images", "2", "--captions-per-image", "2", "--length", "3", "--steps", "1"),
        *("--vocab-size", "40", "--feature-dim", "16", "--grid", "4"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [(line["decoder"], line["precision"]) for line in lines] == [
        ("attention", "32-true"),
        ("attention", "bf16-mixed"),
        ("transformer", "32-true"),
        ("transformer", "bf16-mixed"),
    ]
    assert all(isinstance(line["cpu_native_bf16"], bool) for line in lines)
    assert all(line["captions_per_step"] == 4 and line["seconds_per_step"] > 0 for line in lines)
