"""Extending captionlab from outside: registry names, plugins (entry points and plugins=[...]),
checkpoints that record them and never import anything, and the installed tool used from another
folder with the example plugin (examples/plugin)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli

from captionlab import plugins
from captionlab.errors import UserError
from captionlab.registry import check_targets, component, register
from captionlab.systems.loading import load_system

EXAMPLE_PLUGIN = ROOT / "examples" / "plugin"


def test_register_gives_a_name_and_refuses_a_taken_one():
    class Mine:
        pass

    class Other:
        pass

    assert register("callback", "test_mine")(Mine) is Mine
    register("callback", "test_mine")(Mine)  # the same object again (a re-import) is fine
    entry = component("callback/test_mine")
    assert entry.obj is Mine and entry.origin == "test_plugins"
    assert component(f"{Mine.__module__}.{Mine.__qualname__}") is entry
    with pytest.raises(UserError, match="as callback/test_mine: that name is taken by .*Mine"):
        register("callback", "test_mine")(Other)
    with pytest.raises(ValueError, match="lower-case"):
        register("Decoder", "My LSTM")


def test_a_named_plugin_registers_its_components_under_its_package(tmp_path, monkeypatch):
    (tmp_path / "my_parts.py").write_text(
        "from captionlab.registry import register\n"
        "from captionlab.training.losses import CrossEntropyLoss\n\n"
        "@register('loss', 'test_smoothed')\n"
        "class Smoothed(CrossEntropyLoss):\n"
        "    def __init__(self):\n"
        "        super().__init__(label_smoothing=0.1)\n"
    )
    monkeypatch.chdir(tmp_path)  # plugins=[...] finds modules in the current folder
    assert "my_parts" in plugins.load(["my_parts"])
    used = check_targets(
        {"loss": {"_target_": "loss/test_smoothed"}, "decoder": {"_target_": "decoder/lstm"}}, "x"
    )
    assert plugins.record(used) == {"my_parts": {"components": ["loss/test_smoothed"]}}
    with pytest.raises(UserError, match=r"plugins=\[no_such_module\]: no module named no_such_module"):
        plugins.load(["no_such_module"])
    (tmp_path / "broken_parts.py").write_text("raise RuntimeError('half-written plugin')\n")
    with pytest.raises(
        UserError, match="plugin broken_parts .* failed to load: RuntimeError: half-written plugin"
    ):
        plugins.load(["broken_parts"])


def _edited_checkpoint(tiny_run, tmp_path: Path, name: str, edit) -> Path:
    run, _, _ = tiny_run
    checkpoint = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    edit(checkpoint)
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


def test_a_checkpoint_cannot_make_captionlab_import_a_module(tiny_run, tmp_path, monkeypatch):
    """A module that would leave a file behind when imported is on the path; checkpoints that name
    it (as a `_target_`, or as a plugin they need) are refused, and it is never imported."""
    marker = tmp_path / "imported.txt"
    (tmp_path / "planted.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Decoder:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    def name_target(checkpoint):
        checkpoint["hyper_parameters"]["config"]["decoder"]["_target_"] = "planted.Decoder"

    def name_plugin(checkpoint):
        checkpoint["captionlab"]["plugins"] = {"planted": {"components": ["decoder/lstm"]}}

    by_target = _edited_checkpoint(tiny_run, tmp_path, "target.ckpt", name_target)
    by_plugin = _edited_checkpoint(tiny_run, tmp_path, "plugin.ckpt", name_plugin)
    with pytest.raises(UserError, match="'_target_: planted.Decoder' is not a registered component"):
        load_system(by_target)
    with pytest.raises(UserError, match="needs the plugin planted for decoder/lstm, which is not installed"):
        load_system(by_plugin)
    for path in (by_target, by_plugin):  # and as a user runs it
        result = run_cli("evaluate.py", f"ckpt_path={path}", env={"PYTHONPATH": str(tmp_path)})
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert not marker.exists() and "planted" not in sys.modules


def test_a_newer_checkpoint_format_is_refused(tiny_run, tmp_path):
    def newer(checkpoint):
        checkpoint["captionlab"]["format_version"] = 99

    path = _edited_checkpoint(tiny_run, tmp_path, "newer.ckpt", newer)
    with pytest.raises(
        UserError, match="newer captionlab \\(checkpoint format 99; this one reads formats up to 2\\)"
    ):
        load_system(path)


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed_tool(tmp_path_factory):
    """A new venv with captionlab and the example plugin installed from wheels (not editable).
    Their dependencies (torch, Lightning, ...) come from this environment through a .pth file, so
    that nothing is downloaded; captionlab itself is only the wheel's (this environment's editable
    install is a .pth hook, which a path added this way does not run)."""
    base = tmp_path_factory.mktemp("installed")
    wheels, venv = base / "wheels", base / "venv"
    build = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(wheels),
    ]
    for project in (ROOT, EXAMPLE_PLUGIN):
        result = _run([*build, str(project)], cwd=base, env=dict(os.environ))
        assert result.returncode == 0, result.stderr[-3000:]
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    result = _run(
        [*pip, "install", "-q", "--no-deps", "--no-index", *map(str, wheels.glob("*.whl"))],
        base,
        dict(os.environ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("CAPTIONLAB_ROOT", "PYTHONPATH", "VIRTUAL_ENV")}
    return {"bin": venv / "bin", "pip": pip, "env": {**env, "HF_HUB_OFFLINE": "1"}}


@pytest.mark.slow
def test_installed_tool_with_the_example_plugin_from_another_folder(installed_tool, tmp_path, cache_dir):
    tool, env = str(installed_tool["bin"] / "captionlab"), installed_tool["env"]
    work = tmp_path / "project"  # outside the repository: nothing of it is on the path
    work.mkdir()
    result = _run([tool, "train", "--help"], work, env)
    assert result.returncode == 0 and "decoder: gru" in result.stdout and "loss: focal" in result.stdout

    small = ["data.source.num_train=48", "data.source.num_val=16", "data.source.num_test=16"]
    quiet = ["trainer.enable_progress_bar=false", f"paths.cache_dir={cache_dir}"]
    result = _run(
        [
            tool,
            "train",
            "decoder=gru",
            "loss=focal",
            "trainer.fast_dev_run=true",
            *small,
            *quiet,
            "metrics.meteor_final=false",
        ],
        work,
        env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (checkpoint,) = work.glob("outputs/train/runs/*/checkpoints/last.ckpt")  # outputs/ in the user's folder
    saved = torch.load(checkpoint, weights_only=True)
    assert saved["hyper_parameters"]["config"]["decoder"]["_target_"] == "decoder/gru"
    assert saved["captionlab"]["plugins"] == {
        "captionlab_toy": {
            "components": ["decoder/gru", "loss/focal"],
            "distribution": "captionlab-toy",
            "version": "0.1.0",
        }
    }

    result = _run(
        [tool, "evaluate", f"ckpt_path={checkpoint}", "split=test", "metrics.meteor=false", *quiet], work, env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(work.glob("outputs/eval/runs/*/metrics.json"))
    images = work / "photos"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(images / "red.png")
    result = _run([tool, "caption", f"ckpt_path={checkpoint}", f"images={images}"], work, env)
    assert result.returncode == 0 and "red.png: " in result.stdout, result.stderr[-3000:]

    # Lightning's DDP launcher starts its second process with the same command line
    ddp = ["trainer=ddp_cpu", "trainer.max_epochs=1", "hydra.run.dir=ddp_run", "metrics.meteor_final=false"]
    result = _run([tool, "train", "decoder=gru", *ddp, *small, *quiet], work, env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[rank: 1]" in (work / "ddp_run" / "train.log").read_text()

    result = _run([*installed_tool["pip"], "uninstall", "-q", "-y", "captionlab-toy"], work, env)
    assert result.returncode == 0, result.stderr
    result = _run([tool, "evaluate", f"ckpt_path={checkpoint}"], work, env)
    assert result.returncode == 2 and result.stderr.strip() == (
        f"error: checkpoint {checkpoint} needs the plugin captionlab_toy (captionlab-toy 0.1.0) for "
        "decoder/gru, loss/focal, which is not installed: pip install captionlab-toy, or name its module "
        "with plugins=[captionlab_toy]"
    )
    result = _run([tool, "train", "decoder=gru"], work, env)
    assert result.returncode == 2 and "unknown decoder option 'gru'" in result.stderr
