"""Every option of every config group composes, and the components it names can be built."""

from pathlib import Path

import pytest
import torch
from conftest import CONF_DIR, compose
from omegaconf import OmegaConf

from captionlab.registry import check_targets

GROUPS = sorted(p.name for p in (CONF_DIR).iterdir() if p.is_dir() and p.name != "hydra")


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in _options(g)])
def test_every_option_composes_and_resolves(group, option, tmp_path):
    cfg = compose([f"{group}={option}", f"paths.output_dir={tmp_path}"])
    # resolve everything but Hydra's own node (absent outside a Hydra run)
    container = OmegaConf.to_container(cfg, resolve=True)
    # every section captionlab builds names registered components (Hydra's own launchers and
    # sweepers, under hydra:, are Hydra's)
    for section in (
        "model",
        "data",
        "encoder",
        "decoder",
        "search",
        "loss",
        "optim",
        "trainer",
        "callbacks",
        "logger",
    ):
        check_targets(container.get(section) or {}, section)
    assert cfg.trainer._target_ == "trainer/lightning"


def test_default_groups():
    cfg = compose(["paths.output_dir=/tmp/x"])
    assert cfg.data.name == "shapes" and cfg.encoder.name == "resnet10t"
    assert cfg.decoder._target_ == "decoder/lstm" and cfg.search._target_ == "search/greedy"
    assert cfg.optimized_metric == "val/cider_best"
    assert cfg.callbacks.model_checkpoint.monitor == "val/cider"


def test_encoder_reads_the_native_image_size():
    cfg = compose(["paths.output_dir=/tmp/x", "data.source.image_size=96"])
    assert cfg.encoder.input_size == 96 and cfg.encoder.crop is False


def test_hydra_settings_keep_the_working_directory(tmp_path):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name="train", return_hydra_config=True)
    assert cfg.hydra.job.chdir is False
    assert "/runs/" in cfg.hydra.run.dir and "/multiruns/" in cfg.hydra.sweep.dir


def test_registry_refuses_foreign_targets():
    from captionlab.errors import UserError

    with pytest.raises(UserError, match="builtins.eval"):
        check_targets({"_target_": "builtins.eval"}, "decoder")
    with pytest.raises(UserError):
        check_targets({"inner": {"_target_": "os.system"}}, "encoder")
    with pytest.raises(UserError, match="registered decoder components: attention, .*lstm, .*transformer"):
        check_targets({"_target_": "decoder/nope"}, "decoder")
    # names, the classes' own paths, and old paths (the alias table) all find the same component
    for target in ("decoder/lstm", "captionlab.models.decoders.lstm.LSTMDecoder"):
        assert [c.key for c in check_targets({"_target_": target}, "decoder")] == ["decoder/lstm"]
    assert [c.key for c in check_targets({"_target_": "torch.optim.Adam"}, "optim")] == ["optimizer/adam"]
    old = {"_target_": "captionlab.training.module.CaptionModule"}
    assert [c.key for c in check_targets(old, "model")] == ["model/captioner"]
    assert Path(CONF_DIR / "train.yaml").is_file()


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_builds_its_loss_and_search(experiment, tmp_path):
    """A preset's loss and search settings are constructor arguments: a misspelt one fails here."""
    from captionlab.registry import build

    cfg = compose([f"experiment={experiment}", f"paths.output_dir={tmp_path}"])
    assert isinstance(build(cfg.loss, "loss"), torch.nn.Module)
    build(cfg.search, "search")
