"""Tests of minigpt.optim: AdamW and SGD against hand computations, clipping, the schedule, errors.

The optimizers only need objects with `.data` and `.grad`; `FakeParameter` below stands in for
`minigpt.nn.Parameter`. Exact checks run in float64 (tolerance 1e-12 relative); float32 checks
state their tolerance.
"""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.optim import (
    SGD,
    AdamW,
    clip_grad_norm_,
    flatten_state_dict,
    unflatten_state_dict,
    warmup_cosine_lr,
)


class FakeParameter:
    """A stand-in for minigpt.nn.Parameter: `.data` and `.grad` arrays."""

    def __init__(self, data, grad=None):
        self.data = np.asarray(data)
        self.grad = grad


def make_parameters(shapes, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [FakeParameter(rng.standard_normal(shape).astype(dtype)) for shape in shapes]


def set_gradients(parameters, rng, skip=()):
    for index, parameter in enumerate(parameters):
        if index in skip:
            parameter.grad = None
        else:
            parameter.grad = rng.standard_normal(parameter.data.shape).astype(parameter.data.dtype)


def reference_adamw(values, gradients_per_step, lr, betas, eps, weight_decay):
    """AdamW written out per PyTorch's documented algorithm, in float64, one parameter at a time.

    gradients_per_step[s][i] is parameter i's gradient at step s, or None (parameter skipped).
    """
    beta1, beta2 = betas
    values = [np.array(value, dtype=np.float64) for value in values]
    exp_avg = [np.zeros_like(value) for value in values]
    exp_avg_sq = [np.zeros_like(value) for value in values]
    steps = [0] * len(values)
    for gradients in gradients_per_step:
        for i, grad in enumerate(gradients):
            if grad is None:
                continue
            steps[i] += 1
            t = steps[i]
            values[i] = values[i] * (1 - lr * weight_decay)
            exp_avg[i] = beta1 * exp_avg[i] + (1 - beta1) * grad
            exp_avg_sq[i] = beta2 * exp_avg_sq[i] + (1 - beta2) * grad * grad
            m_hat = exp_avg[i] / (1 - beta1**t)
            v_hat = exp_avg_sq[i] / (1 - beta2**t)
            values[i] = values[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    return values


# ------------------------------------------------------------------------------------------------
# AdamW
# ------------------------------------------------------------------------------------------------


def test_adamw_one_step_equals_closed_form():
    # After one step m_hat = g and v_hat = g*g exactly, so the update is
    # p1 = p0 * (1 - lr * wd) - lr * g / (|g| + eps): computed here by hand, element by element.
    lr, weight_decay, eps = 0.01, 0.1, 1e-8
    p0 = np.array([[1.0, -2.0], [0.5, 3.0]])
    g = np.array([[0.2, -0.4], [1e-3, 5.0]])
    parameter = FakeParameter(p0.copy(), g.copy())
    AdamW([parameter], lr=lr, betas=(0.9, 0.999), eps=eps, weight_decay=weight_decay).step()
    expected = p0 * (1 - lr * weight_decay) - lr * g / (np.abs(g) + eps)
    np.testing.assert_allclose(parameter.data, expected, rtol=1e-12, atol=0)
    assert parameter.data[0, 0] == pytest.approx(1.0 * 0.999 - 0.01 * 0.2 / (0.2 + 1e-8), rel=1e-14)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    chunk_size=st.sampled_from([1, 3, 7, 64, 10_000]),
    weight_decay=st.sampled_from([0.0, 0.01, 0.1]),
    steps=st.integers(1, 5),
)
def test_adamw_several_steps_match_reference_loop(seed, chunk_size, weight_decay, steps):
    rng = np.random.default_rng(seed)
    shapes = [(5, 3), (7,), (1,), (2, 2, 2)]
    parameters = make_parameters(shapes, seed=seed)
    initial = [p.data.copy() for p in parameters]
    hyper = dict(lr=0.003, betas=(0.8, 0.95), eps=1e-6, weight_decay=weight_decay)
    optimizer = AdamW(parameters, chunk_size=chunk_size, **hyper)
    history = []
    for _ in range(steps):
        set_gradients(parameters, rng)
        history.append([p.grad.copy() for p in parameters])
        optimizer.step()
    expected = reference_adamw(initial, history, **hyper)
    for parameter, value in zip(parameters, expected):
        np.testing.assert_allclose(parameter.data, value, rtol=1e-12, atol=1e-15)


def test_adamw_float32_stays_float32_and_matches_float64_reference():
    rng = np.random.default_rng(1)
    parameters = make_parameters([(300, 70), (70,)], dtype=np.float32)
    initial = [p.data.astype(np.float64) for p in parameters]
    optimizer = AdamW(parameters, lr=1e-3, weight_decay=0.1, chunk_size=1000)
    history = []
    for _ in range(3):
        set_gradients(parameters, rng)
        history.append([p.grad.astype(np.float64) for p in parameters])
        optimizer.step()
    expected = reference_adamw(initial, history, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    for parameter, value in zip(parameters, expected):
        assert parameter.data.dtype == np.float32
        # float32 rounding of values of order 1 over three steps of size 1e-3: well under 1e-6.
        np.testing.assert_allclose(parameter.data, value, rtol=0, atol=2e-6)
    assert optimizer.state_dict()["state"][0]["exp_avg"].dtype == np.float32


def test_adamw_parameters_are_views_of_one_flat_buffer():
    parameters = make_parameters([(3, 4), (5,)])
    values = [p.data.copy() for p in parameters]
    optimizer = AdamW(parameters)
    flat = optimizer._flat_groups[0].data
    for parameter, value in zip(parameters, values):
        assert np.shares_memory(parameter.data, flat)
        np.testing.assert_array_equal(parameter.data, value)


def test_adamw_weight_decay_skip_group():
    rng = np.random.default_rng(2)
    decayed, skipped = make_parameters([(4, 4), (4,)])
    initial = [decayed.data.copy(), skipped.data.copy()]
    optimizer = AdamW(
        [{"params": [decayed]}, {"params": [skipped], "weight_decay": 0.0}], lr=0.01, weight_decay=0.5
    )
    assert [group["weight_decay"] for group in optimizer.param_groups] == [0.5, 0.0]
    set_gradients([decayed, skipped], rng)
    grads = [decayed.grad.copy(), skipped.grad.copy()]
    optimizer.step()
    hyper = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    np.testing.assert_allclose(
        decayed.data, reference_adamw(initial[:1], [grads[:1]], weight_decay=0.5, **hyper)[0], rtol=1e-12
    )
    np.testing.assert_allclose(
        skipped.data, reference_adamw(initial[1:], [grads[1:]], weight_decay=0.0, **hyper)[0], rtol=1e-12
    )


def test_adamw_parameter_without_gradient_is_untouched_and_keeps_its_step():
    rng = np.random.default_rng(3)
    parameters = make_parameters([(3,), (2, 2), (4,)])
    initial = [p.data.copy() for p in parameters]
    hyper = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    optimizer = AdamW(parameters, **hyper)
    history = []
    for skip in [(1,), (1,), ()]:
        set_gradients(parameters, rng, skip=skip)
        history.append([None if p.grad is None else p.grad.copy() for p in parameters])
        optimizer.step()
        if skip:
            np.testing.assert_array_equal(parameters[1].data, initial[1])  # no decay either
    state = optimizer.state_dict()["state"]
    assert [state[i]["step"] for i in range(3)] == [3, 1, 3]
    expected = reference_adamw(initial, history, **hyper)
    for parameter, value in zip(parameters, expected):
        np.testing.assert_allclose(parameter.data, value, rtol=1e-12)


def test_adamw_lr_set_between_steps_is_used():
    rng = np.random.default_rng(4)
    parameters = make_parameters([(6,)])
    initial = [parameters[0].data.copy()]
    optimizer = AdamW(parameters, lr=1.0, weight_decay=0.0)
    grads = []
    for lr in [0.1, 0.02]:
        optimizer.param_groups[0]["lr"] = lr
        set_gradients(parameters, rng)
        grads.append(parameters[0].grad.copy())
        optimizer.step()
    # Reference: the same two steps with lr changed in between.
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    value, m, v = initial[0], 0.0, 0.0
    for t, (lr, g) in enumerate(zip([0.1, 0.02], grads), start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        value = value - lr * (m / (1 - beta1**t)) / (np.sqrt(v / (1 - beta2**t)) + eps)
    np.testing.assert_allclose(parameters[0].data, value, rtol=1e-12)


def test_adamw_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(5)
    shapes = [(4, 3), (3,)]
    parameters = make_parameters(shapes)
    optimizer = AdamW(parameters, lr=0.01, weight_decay=0.1)
    for _ in range(2):
        set_gradients(parameters, rng)
        optimizer.step()
    # Save as a checkpoint would: arrays for safetensors, the rest through JSON.
    arrays, metadata = flatten_state_dict(optimizer.state_dict())
    arrays = {key: value.copy() for key, value in arrays.items()}
    metadata = json.loads(json.dumps(metadata))
    saved_values = [p.data.copy() for p in parameters]
    future_grads = [[rng.standard_normal(shape) for shape in shapes] for _ in range(3)]

    for grads in future_grads:  # the uninterrupted run
        for parameter, grad in zip(parameters, grads):
            parameter.grad = grad
        optimizer.step()

    resumed = [FakeParameter(value.copy()) for value in saved_values]
    resumed_optimizer = AdamW(resumed, lr=0.5, weight_decay=0.0)  # hyperparameters come from the state
    resumed_optimizer.load_state_dict(unflatten_state_dict(arrays, metadata))
    assert resumed_optimizer.param_groups[0]["betas"] == (0.9, 0.999)
    assert resumed_optimizer.param_groups[0]["lr"] == 0.01
    for grads in future_grads:
        for parameter, grad in zip(resumed, grads):
            parameter.grad = grad
        resumed_optimizer.step()
    for parameter, other in zip(parameters, resumed):
        np.testing.assert_array_equal(parameter.data, other.data)


def test_adamw_state_dict_arrays_are_read_only_views():
    parameters = make_parameters([(3,)])
    optimizer = AdamW(parameters)
    exp_avg = optimizer.state_dict()["state"][0]["exp_avg"]
    with pytest.raises(ValueError):
        exp_avg[0] = 1.0


def test_adamw_raises_when_data_is_replaced():
    parameters = make_parameters([(3,), (2,)])
    optimizer = AdamW(parameters)
    parameters[1].data = parameters[1].data.copy()
    for parameter in parameters:
        parameter.grad = np.ones_like(parameter.data)
    with pytest.raises(RuntimeError, match="param group 0, parameter 1: .data is no longer a view"):
        optimizer.step()


def test_adamw_rejects_tied_parameters_and_duplicates():
    shared = np.ones((2, 3))
    with pytest.raises(ValueError, match="parameters 0 and 1 share memory"):
        AdamW([FakeParameter(shared), FakeParameter(shared)])
    with pytest.raises(ValueError, match="share memory"):
        AdamW([{"params": [FakeParameter(shared)]}, {"params": [FakeParameter(shared[0])]}])
    parameter = FakeParameter(np.ones(3))
    with pytest.raises(ValueError, match="appears more than once"):
        AdamW([parameter, parameter])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -1.0}, r"lr: expected a number >= 0.0, received -1.0"),
        ({"lr": float("nan")}, r"lr: expected a finite real number, received nan"),
        ({"eps": -1e-8}, r"eps: expected a number >= 0.0, received -1e-08"),
        ({"weight_decay": -0.1}, r"weight_decay: expected a number >= 0.0, received -0.1"),
        ({"betas": (1.0, 0.999)}, r"betas\[0\]: expected a number >= 0.0 and < 1.0, received 1.0"),
        ({"betas": (0.9, -0.1)}, r"betas\[1\]: expected a number >= 0.0 and < 1.0, received -0.1"),
        ({"betas": 0.9}, r"betas: expected a pair \(beta1, beta2\), received 0.9"),
        ({"chunk_size": 0}, r"chunk_size: expected an integer >= 1, received 0"),
    ],
)
def test_adamw_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdamW(make_parameters([(2,)]), **kwargs)


def test_optimizer_input_errors():
    with pytest.raises(ValueError, match="params: expected at least one parameter, received an empty iterable"):
        AdamW([])
    with pytest.raises(TypeError, match=r"parameter 0: expected a parameter with a floating-point np.ndarray"):
        AdamW([FakeParameter(np.arange(3))])
    with pytest.raises(ValueError, match="expected parameters of one dtype"):
        AdamW([FakeParameter(np.ones(2)), FakeParameter(np.ones(2, dtype=np.float32))])
    parameters = make_parameters([(2, 2)])
    optimizer = AdamW(parameters)
    parameters[0].grad = np.ones(4)
    with pytest.raises(ValueError, match=r"parameter 0: .grad has shape \(4,\), expected the shape of .data, \(2, 2\)"):
        optimizer.step()
    optimizer.param_groups[0]["lr"] = -0.5
    parameters[0].grad = np.ones((2, 2))
    with pytest.raises(ValueError, match="lr: expected a number >= 0.0, received -0.5"):
        optimizer.step()


def test_load_state_dict_errors_leave_optimizer_unchanged():
    parameters = make_parameters([(2,), (3,)])
    optimizer = AdamW(parameters)
    good = optimizer.state_dict()
    other = AdamW(make_parameters([(2,)]))
    with pytest.raises(ValueError, match="parameter group 0 has 1 parameters, this optimizer's has 2"):
        optimizer.load_state_dict(other.state_dict())
    bad = {"state": dict(good["state"]), "param_groups": good["param_groups"]}
    bad["state"][1] = {"step": 1, "exp_avg": np.zeros(5), "exp_avg_sq": np.zeros(3)}
    message = r"state\[1\]\['exp_avg'\] has shape \(5,\), expected the parameter's shape \(3,\)"
    with pytest.raises(ValueError, match=message):
        optimizer.load_state_dict(bad)


def test_zero_grad():
    parameters = make_parameters([(2,), (3,)])
    optimizer = SGD(parameters, lr=0.1)
    parameters[0].grad = np.ones(2)
    optimizer.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(parameters[0].grad, np.zeros(2))
    assert parameters[1].grad is None
    optimizer.zero_grad()
    assert parameters[0].grad is None


# ------------------------------------------------------------------------------------------------
# SGD
# ------------------------------------------------------------------------------------------------


def test_sgd_momentum_and_weight_decay_by_hand():
    parameter = FakeParameter(np.array([1.0, -2.0]))
    optimizer = SGD([parameter], lr=0.1, momentum=0.9, weight_decay=0.01)
    g1, g2 = np.array([0.5, 0.25]), np.array([-1.0, 2.0])
    parameter.grad = g1
    optimizer.step()
    # d1 = g1 + 0.01 * p0; buffer b1 = d1; p1 = p0 - 0.1 * b1
    d1 = g1 + 0.01 * np.array([1.0, -2.0])
    p1 = np.array([1.0, -2.0]) - 0.1 * d1
    np.testing.assert_allclose(parameter.data, p1, rtol=1e-15)
    parameter.grad = g2
    optimizer.step()
    # d2 = g2 + 0.01 * p1; b2 = 0.9 * b1 + d2; p2 = p1 - 0.1 * b2
    b2 = 0.9 * d1 + (g2 + 0.01 * p1)
    np.testing.assert_allclose(parameter.data, p1 - 0.1 * b2, rtol=1e-15)
    np.testing.assert_allclose(optimizer.state_dict()["state"][0]["momentum_buffer"], b2, rtol=1e-15)


def test_sgd_plain_and_state_round_trip():
    parameter = FakeParameter(np.array([1.0, 2.0], dtype=np.float32))
    optimizer = SGD([parameter], lr=0.5)
    parameter.grad = np.array([1.0, -1.0], dtype=np.float32)
    optimizer.step()
    np.testing.assert_array_equal(parameter.data, np.array([0.5, 2.5], dtype=np.float32))
    assert parameter.data.dtype == np.float32
    arrays, metadata = flatten_state_dict(optimizer.state_dict())
    assert arrays == {} and metadata["state"] == {"0": {"momentum_buffer": None}}

    with_momentum = SGD([FakeParameter(np.zeros(2))], lr=0.1, momentum=0.5)
    with_momentum.param_groups[0]["params"][0].grad = np.ones(2)
    with_momentum.step()
    arrays, metadata = flatten_state_dict(with_momentum.state_dict())
    fresh = SGD([FakeParameter(np.zeros(2))], lr=0.1, momentum=0.5)
    fresh.load_state_dict(unflatten_state_dict(arrays, json.loads(json.dumps(metadata))))
    np.testing.assert_array_equal(fresh.state_dict()["state"][0]["momentum_buffer"], np.ones(2))


def test_sgd_argument_errors():
    with pytest.raises(ValueError, match="momentum: expected a number >= 0.0 and < 1.0, received 1.5"):
        SGD(make_parameters([(2,)]), lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="lr: expected a finite real number, received None"):
        SGD(make_parameters([(2,)]), lr=None)


# ------------------------------------------------------------------------------------------------
# clip_grad_norm_
# ------------------------------------------------------------------------------------------------


def test_clip_grad_norm_scales_to_max_norm():
    a = FakeParameter(np.zeros(2), np.array([3.0, 0.0]))
    b = FakeParameter(np.zeros((1, 1)), np.array([[4.0]]))
    c = FakeParameter(np.zeros(3), None)  # no gradient: ignored
    total = clip_grad_norm_([a, b, c], max_norm=1.0)
    assert isinstance(total, float) and total == 5.0
    coef = 1.0 / (5.0 + 1e-6)  # PyTorch's clip_coef
    np.testing.assert_allclose(a.grad, [3.0 * coef, 0.0], rtol=1e-15)
    np.testing.assert_allclose(b.grad, [[4.0 * coef]], rtol=1e-15)
    assert c.grad is None


def test_clip_grad_norm_leaves_small_gradients_alone():
    grad = np.array([0.3, 0.4], dtype=np.float32)
    parameter = FakeParameter(np.zeros(2, dtype=np.float32), grad.copy())
    total = clip_grad_norm_(iter([parameter]), max_norm=1.0)  # a generator works too
    assert total == pytest.approx(0.5, rel=1e-7)
    np.testing.assert_array_equal(parameter.grad, grad)
    assert clip_grad_norm_([FakeParameter(np.zeros(1))], 1.0) == 0.0


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), max_norm=st.floats(0.01, 100.0))
def test_clip_grad_norm_float32_accuracy(seed, max_norm):
    rng = np.random.default_rng(seed)
    parameters = [
        FakeParameter(np.zeros(shape, dtype=np.float32), rng.standard_normal(shape).astype(np.float32))
        for shape in [(50, 40), (7,), (3, 3, 3)]
    ]
    exact = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in parameters))
    total = clip_grad_norm_(parameters, max_norm)
    assert total == pytest.approx(exact, rel=1e-6)  # float32 dot products, float64 sum across arrays
    after = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in parameters))
    assert after == pytest.approx(min(exact, max_norm), rel=1e-5)
    assert all(p.grad.dtype == np.float32 for p in parameters)


def test_clip_grad_norm_errors():
    parameter = FakeParameter(np.zeros(2), np.array([np.inf, 0.0]))
    with pytest.raises(ValueError, match="max_norm: expected a number > 0.0, received 0"):
        clip_grad_norm_([parameter], 0)
    with pytest.raises(RuntimeError, match="total gradient norm is inf"):
        clip_grad_norm_([parameter], 1.0, error_if_nonfinite=True)


# ------------------------------------------------------------------------------------------------
# warmup_cosine_lr
# ------------------------------------------------------------------------------------------------

SCHEDULE = dict(total_steps=100, warmup_steps=20, peak_lr=0.01, initial_lr=0.0001, min_lr=0.00001)


def book_schedule(total_steps, warmup_steps, peak_lr, initial_lr, min_lr):
    """The book's appendix-D loop, transcribed: the learning rate of every global step."""
    lr_increment = (peak_lr - initial_lr) / warmup_steps
    lrs = []
    for global_step in range(total_steps):
        if global_step < warmup_steps:
            lr = initial_lr + global_step * lr_increment
        else:
            progress = (global_step - warmup_steps) / (total_steps - warmup_steps)
            lr = min_lr + (peak_lr - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        lrs.append(lr)
    return lrs


def test_schedule_matches_the_book_loop_exactly():
    ours = [warmup_cosine_lr(step, **SCHEDULE) for step in range(SCHEDULE["total_steps"])]
    assert ours == book_schedule(**SCHEDULE)


def test_schedule_landmarks_and_monotonic_pieces():
    assert warmup_cosine_lr(0, **SCHEDULE) == 0.0001
    assert warmup_cosine_lr(20, **SCHEDULE) == 0.01
    assert warmup_cosine_lr(19, **SCHEDULE) == pytest.approx(0.0001 + 19 * (0.01 - 0.0001) / 20)
    assert warmup_cosine_lr(100, **SCHEDULE) == pytest.approx(0.00001, abs=1e-18)
    assert warmup_cosine_lr(60, **SCHEDULE) == pytest.approx((0.01 + 0.00001) / 2)
    warmup = [warmup_cosine_lr(step, **SCHEDULE) for step in range(21)]
    decay = [warmup_cosine_lr(step, **SCHEDULE) for step in range(20, 101)]
    assert all(a < b for a, b in zip(warmup, warmup[1:]))
    assert all(a > b for a, b in zip(decay, decay[1:]))
    no_warmup = dict(SCHEDULE, warmup_steps=0)
    assert warmup_cosine_lr(0, **no_warmup) == 0.01


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"step": -1}, "step: expected an integer >= 0, received -1"),
        ({"step": 101}, "step: expected at most total_steps=100 .*received 101"),
        ({"step": 1.5}, "step: expected an integer >= 0, received 1.5"),
        ({"total_steps": 0, "warmup_steps": 0}, "total_steps: expected an integer >= 1, received 0"),
        ({"warmup_steps": 100}, "warmup_steps: expected fewer than total_steps=100 .*received 100"),
        ({"warmup_steps": -1}, "warmup_steps: expected an integer >= 0, received -1"),
        ({"peak_lr": -0.1}, r"peak_lr: expected a number >= 0.0, received -0.1"),
        ({"initial_lr": float("inf")}, "initial_lr: expected a finite real number, received inf"),
        ({"min_lr": 0.1}, r"min_lr: expected at most peak_lr=0.01, received 0.1"),
    ],
)
def test_schedule_errors(changes, message):
    arguments = dict(SCHEDULE, step=5)
    arguments.update(changes)
    step = arguments.pop("step")
    with pytest.raises(ValueError, match=message):
        warmup_cosine_lr(step, **arguments)


def test_adamw_with_threads_gives_the_same_result_as_without(monkeypatch):
    """Chunks shared by the engine's threads: every element is updated alone, so the bits are
    identical with 1 or 2 threads, and with the deprecated num_threads=1 (the calling thread)."""
    import minigpt.optim
    from autograd import parallel
    from minigpt.optim import AdamW

    monkeypatch.setattr(minigpt.optim, "GRAIN_SIZE", 64)  # pieces of one 64-element chunk: small parameters split too
    before = parallel.get_num_threads()
    shapes = [(300, 7), (5,), (1000,)]
    runs = []
    try:
        for engine_threads, num_threads in ((1, None), (2, None), (2, 1)):
            parallel.set_num_threads(engine_threads)
            params = make_parameters(shapes, dtype=np.float32, seed=1)
            optimizer = AdamW(params, lr=1e-2, weight_decay=0.1, chunk_size=64, num_threads=num_threads)
            grads = np.random.default_rng(2)
            for _ in range(3):
                for p in params:
                    p.grad = grads.standard_normal(p.data.shape).astype(np.float32)
                optimizer.step()
            runs.append([p.data.copy() for p in params])
    finally:
        parallel.set_num_threads(before)
    for single, threaded, inline in zip(*runs):
        np.testing.assert_array_equal(single, threaded)
        np.testing.assert_array_equal(single, inline)


def test_one_thread_setting_leaves_no_thread_of_ours():
    """After set_num_threads(1) (what `--threads 1` calls), a training step (forward, backward,
    AdamW on parameters large enough to be split) starts no thread: AdamW has no pool of its own."""
    import threading

    from autograd import functional as F
    from autograd import parallel
    from minigpt.model import GPTModel
    from minigpt.optim import CHUNK_SIZE, AdamW

    before = parallel.get_num_threads()
    parallel.set_num_threads(1)
    try:
        for thread in threading.enumerate():  # a pool retired by set_num_threads ends once idle
            if thread.name.startswith(("autograd", "adamw")):
                thread.join(timeout=10)
        alive_before = set(threading.enumerate())
        cfg = dict(vocab_size=4096, context_length=16, emb_dim=128, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=False)
        model = GPTModel(cfg, rng=0)
        assert model.tok_emb.weight.data.size >= 4 * CHUNK_SIZE  # the size AdamW used to thread
        optimizer = AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
        ids = np.random.default_rng(0).integers(0, cfg["vocab_size"], size=(4, 17))
        loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        alive = set(threading.enumerate())
        assert alive <= alive_before, [thread.name for thread in alive - alive_before]
        assert not [thread.name for thread in alive if thread.name.startswith(("autograd", "adamw"))]
        assert threading.active_count() == len(alive_before)
    finally:
        parallel.set_num_threads(before)
