"""The shared checks that turn an invalid option into a `ConfigurationError` naming the flag."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sylvan.errors import ConfigurationError, require_in
from sylvan.methods.bic import BiC
from sylvan.methods.clser import CLSER
from sylvan.methods.ewc import EWC
from sylvan.methods.hal import HAL
from sylvan.methods.stable_sgd import StableSGD


@dataclass
class Options:
    share: float = 0.5
    rate: float = 0.5


@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_require_in_accepts_a_closed_interval_and_its_ends(value):
    require_in(Options(share=value), 0, 1, "share")


@pytest.mark.parametrize(
    ("value", "low_open", "high_open", "message"),
    [
        (-0.1, False, False, r"--share must be in \[0, 1\], got -0.1"),
        (1.5, False, False, r"--share must be in \[0, 1\], got 1.5"),
        (0.0, True, False, r"--share must be in \(0, 1\], got 0.0"),
        (1.0, False, True, r"--share must be in \[0, 1\), got 1.0"),
        (1.0, True, True, r"--share must be in \(0, 1\), got 1.0"),
    ],
)
def test_require_in_refuses_a_value_outside_and_says_which_ends_are_in(value, low_open, high_open, message):
    with pytest.raises(ConfigurationError, match=message):
        require_in(Options(share=value), 0, 1, "share", low_open=low_open, high_open=high_open)


def test_require_in_names_the_first_option_out_of_range():
    with pytest.raises(ConfigurationError, match="--rate must be in"):
        require_in(Options(share=0.2, rate=2.0), 0, 1, "share", "rate")


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        (EWC, {"gamma": 1.1}, r"--gamma must be in \[0, 1\]"),
        (HAL, {"beta": 1.0}, r"--beta must be in \[0, 1\)"),
        (StableSGD, {"lr_decay": 0.0}, r"--lr_decay must be in \(0, 1\]"),
        (StableSGD, {"dropout": 1.0}, r"--dropout must be in \[0, 1\)"),
        (CLSER, {"stable_alpha": 1.5}, r"--stable_alpha must be in \[0, 1\]"),
        (CLSER, {"plastic_update_freq": -0.5}, r"--plastic_update_freq must be in \[0, 1\]"),
        (BiC, {"val_fraction": 0.0}, r"--val_fraction must be in \(0, 1\)"),
    ],
)
def test_methods_refuse_a_hyperparameter_outside_its_interval(method, options, message):
    with pytest.raises(ConfigurationError, match=message):
        method(**options)
