"""The warning for bf16 autocast on a CPU that only emulates bfloat16."""

import logging

import pytest
from omegaconf import OmegaConf

from captionlab.pipelines import common


@pytest.mark.parametrize(
    ("precision", "native", "warned"),
    [("bf16-mixed", False, True), ("bf16-mixed", True, False), ("32-true", False, False)],
)
def test_warns_only_for_bf16_on_a_cpu_without_native_bf16(monkeypatch, caplog, precision, native, warned):
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(common, "default_device", lambda: "cpu")
    with caplog.at_level(logging.WARNING, logger=common.__name__):
        common.warn_if_bf16_is_emulated(OmegaConf.create({"precision": precision, "accelerator": "auto"}))
    assert ("use trainer.precision=32" in caplog.text) is warned


def test_no_warning_when_training_on_a_gpu(monkeypatch, caplog):
    monkeypatch.setattr(common, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(common, "default_device", lambda: "cuda")
    with caplog.at_level(logging.WARNING, logger=common.__name__):
        common.warn_if_bf16_is_emulated(OmegaConf.create({"precision": "bf16-mixed", "accelerator": "gpu"}))
    assert caplog.text == ""


def test_the_probe_answers_a_bool():
    assert isinstance(common.cpu_has_native_bf16(), bool)
