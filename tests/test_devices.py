"""One list of device choices and one of loss names, read by the CLI, the widgets and the core."""

import argparse

import pytest

from napari_brainseg.cli import build_parser
from napari_brainseg.devices import DEVICES, check_device, pick_device
from napari_brainseg.loss_config import LOSS_NAMES


def _choices(command: str, dest: str) -> tuple:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    action = next(a for a in sub.choices[command]._actions if a.dest == dest)
    return tuple(action.choices)


def test_cli_choices_are_the_core_lists():
    assert _choices("train", "device") == DEVICES == ("auto", "cpu", "cuda", "mps")
    assert _choices("segment", "device") == DEVICES
    assert _choices("train", "loss") == LOSS_NAMES


def test_unknown_device_is_a_value_error_that_lists_the_choices():
    with pytest.raises(ValueError, match="auto, cpu, cuda or mps, got 'gpu'"):
        check_device("gpu")
    with pytest.raises(ValueError, match="got 'gpu'"):
        pick_device("gpu")  # torch's own error would be a RuntimeError about device strings
    assert pick_device("cpu").type == "cpu"


def test_train_config_and_predictor_use_the_same_check(tiny_model):
    from napari_brainseg.predict import Predictor
    from napari_brainseg.train import TrainConfig

    with pytest.raises(ValueError, match="got 'gpu'"):
        TrainConfig(device="gpu")
    with pytest.raises(ValueError, match="got 'gpu'"):
        Predictor.from_checkpoint(tiny_model, device="gpu")
