"""The entry points as a user runs them: help, config printing, fast_dev_run, one-line errors."""

from conftest import run_cli


def test_help_and_cfg_job():
    result = run_cli("train.py", "--help")
    assert result.returncode == 0 and "decoder: attention, lstm, transformer, updown" in result.stdout
    assert result.stdout.startswith("captionlab")
    for script, name in (("evaluate.py", "evaluate"), ("caption.py", "caption")):  # each its own help
        result = run_cli(script, "--help")
        assert result.returncode == 0 and result.stdout.startswith(f"captionlab {name}:"), result.stdout[:200]
    result = run_cli("train.py", "--cfg", "job", "decoder.hidden_dim=64")
    assert result.returncode == 0 and "hidden_dim: 64" in result.stdout


def test_fast_dev_run_end_to_end(tmp_path, cache_dir):
    result = run_cli(
        "train.py",
        "debug=fast_dev_run",
        f"hydra.run.dir={tmp_path}",
        f"paths.cache_dir={cache_dir}",
        "data.source.num_train=64",
        "data.source.num_val=16",
        "data.source.num_test=16",
        "trainer.enable_progress_bar=false",
        "metrics.meteor_final=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "predictions_test.json").is_file()
    # with the progress bar off, one line per epoch still says how training goes
    assert "epoch 1/1: train/loss" in (tmp_path / "debug.log").read_text()  # debug presets: task_name debug


def test_unknown_group_option_is_one_line():
    result = run_cli("train.py", "decoder=lstmm")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: unknown decoder option 'lstmm'; choose one of: attention, lstm, transformer, updown"
    )


def test_unknown_option_in_a_sweep_list_is_caught():
    result = run_cli("train.py", "-m", "encoder=resnet10t,resnet5000")
    assert result.returncode == 2 and "unknown encoder option 'resnet5000'" in result.stderr


def test_unwritable_output_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("train.py", f"hydra.run.dir={blocker}/run")
    assert result.returncode != 0
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot create the run folder" in lines[0] and str(blocker) in lines[0], (
        result.stderr
    )


def test_unwritable_cache_folder_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("train.py", f"hydra.run.dir={tmp_path}/run", f"paths.cache_dir={blocker}")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: cannot write the shapes dataset"), result.stderr


def test_unknown_key_is_one_line():
    result = run_cli("train.py", "trainer.max_epoch=3")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "trainer.max_epoch" in lines[0], result.stderr


def test_missing_data_root_is_one_line(tmp_path):
    result = run_cli(
        "train.py", "data=flickr8k", f"data.root={tmp_path}/nowhere", f"hydra.run.dir={tmp_path}/run"
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("error: data.root=") and "Flickr8k.token.txt" in lines[0]
    ), result.stderr


def test_a_users_config_folder_adds_options(tmp_path):
    """hydra.searchpath=[file://my_conf]: the user's group options sit beside captionlab's."""
    (tmp_path / "decoder").mkdir()
    (tmp_path / "decoder" / "big_lstm.yaml").write_text("defaults:\n  - lstm\n  - _self_\nhidden_dim: 64\n")
    result = run_cli("train.py", f"hydra.searchpath=[file://{tmp_path}]", "decoder=big_lstm", "--cfg", "job")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "_target_: decoder/lstm" in result.stdout and "hidden_dim: 64" in result.stdout
    result = run_cli("train.py", f"hydra.searchpath=[file://{tmp_path}]", "decoder=bigger_lstm")
    assert result.stderr.strip() == (
        "error: unknown decoder option 'bigger_lstm'; choose one of: attention, big_lstm, lstm, transformer, updown"
    )


def test_the_captionlab_command_lists_commands_and_components():
    result = run_cli("-m", "captionlab")
    assert result.returncode == 2 and "commands:" in result.stdout and "evaluate" in result.stdout
    result = run_cli("-m", "captionlab", "components", "decoder", "optimizer")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "decoder/attention" in result.stdout and "optimizer/adamw" in result.stdout
    assert "loss/xe" not in result.stdout
    result = run_cli("-m", "captionlab", "trian")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: unknown command 'trian'; choose one of: train, evaluate, caption, components"
    )
