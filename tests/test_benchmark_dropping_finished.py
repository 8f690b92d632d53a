"""scripts/benchmark.py beam and sampling: the rate with and without dropping finished rows, and
whether both gave the same captions (they must)."""

import json

import pytest
from conftest import run_cli


@pytest.mark.parametrize(
    "section, options",
    [("beam", ["--num-beams", "3", "--length-penalty", "0"]), ("sampling", ["--samples", "4"])],
)
def test_benchmark_compares_dropping_finished_rows_with_stepping_every_row(tiny_run, section, options):
    run, _, _ = tiny_run
    result = run_cli(
        "scripts/benchmark.py", section, str(run / "checkpoints" / "best.ckpt"), "--images", "24", *options
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [line.get("method") for line in lines] == ["every_row", "drop_finished", None]
    assert [line["drop_finished_share"] for line in lines[:2]] == [None, 0.5]
    assert all(line["images"] == 24 and line["captions_per_s"] > 0 for line in lines[:2])
    assert lines[-1]["same_captions"] is True
