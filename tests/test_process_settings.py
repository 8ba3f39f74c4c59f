"""The training process settings are applied once, when the first optimizer is built, unless opted out
(issue 10; moved out of `Tensor.backward` by issue 21: backward runs nothing but the gradient walk)."""

import numpy as np
import pytest

import autograd
from autograd import memory, parallel


@pytest.fixture
def calls(monkeypatch):
    """Record calls of the two settings instead of changing this test process; reset the state."""
    recorded = []
    monkeypatch.setattr(memory, "keep_freed_memory", lambda: recorded.append("keep_freed_memory") or True)
    monkeypatch.setattr(parallel, "set_openblas_thread_timeout", lambda: recorded.append("set_openblas_thread_timeout") or True)
    monkeypatch.setattr(memory, "settings_pending", True)
    monkeypatch.delenv(memory.PROCESS_SETTINGS_ENV, raising=False)
    return recorded


def backward_once():
    x = autograd.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    return x.grad


def build_optimizer(kind="AdamW"):
    from minigpt import optim
    from minigpt.nn import Parameter

    return getattr(optim, kind)([Parameter(np.ones(3, dtype=np.float32))], lr=0.1)


def test_backward_applies_nothing(calls):
    backward_once()
    backward_once()
    assert calls == [] and memory.settings_pending


@pytest.mark.parametrize("kind", ["AdamW", "SGD"])
def test_building_the_first_optimizer_applies_both_settings_once(calls, kind):
    assert calls == []  # nothing on import, in the forward pass or in backward
    backward_once()
    assert calls == []
    build_optimizer(kind)
    assert calls == ["keep_freed_memory", "set_openblas_thread_timeout"]
    build_optimizer(kind)
    backward_once()
    assert memory.apply_process_settings() is False
    assert len(calls) == 2


@pytest.mark.parametrize("value", ["0", "false", "OFF", " no "])
def test_the_environment_variable_opts_out(calls, monkeypatch, value):
    monkeypatch.setenv("MINIGPT_PROCESS_SETTINGS", value)
    build_optimizer()
    assert backward_once().tolist() == [2.0, 4.0]
    assert calls == [] and not memory.settings_pending


def test_disable_process_settings_opts_out(calls):
    memory.disable_process_settings()
    build_optimizer()
    assert calls == []


def test_apply_process_settings_can_be_called_by_hand(calls, monkeypatch):
    monkeypatch.setenv("MINIGPT_PROCESS_SETTINGS", "1")
    assert memory.apply_process_settings() is True
    build_optimizer()
    assert calls == ["keep_freed_memory", "set_openblas_thread_timeout"]
