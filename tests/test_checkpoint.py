"""Tests of minigpt.checkpoint: round trips (tied weights, optimizer, metadata), atomic writes, errors."""

import json
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

import minigpt.checkpoint as checkpoint
from minigpt.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint
from minigpt.model import GPTModel
from minigpt.optim import AdamW, flatten_state_dict, unflatten_state_dict
from minigpt.train import calc_loss_batch

TINY = dict(vocab_size=29, context_length=8, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=True, tie_weights=True)


def trained_model_and_optimizer(seed=0, steps=2):
    model = GPTModel(TINY, rng=seed)
    optimizer = AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        ids = rng.integers(0, TINY["vocab_size"], size=(2, 9))
        optimizer.zero_grad()
        calc_loss_batch(ids[:, :-1], ids[:, 1:], model).backward()
        optimizer.step()
    return model, optimizer


def test_round_trip_with_tied_weights(tmp_path):
    model, optimizer = trained_model_and_optimizer()
    path = str(tmp_path / "checkpoint.safetensors")
    metadata = {"trainer": {"step": 2, "rng": np.random.default_rng(5).bit_generator.state, "loss": [1.5, float("nan")]}}
    save_checkpoint(path, model.state_dict(), flatten_state_dict(optimizer.state_dict()), metadata)

    with safe_open(path, framework="np") as file:
        keys = set(file.keys())
    assert "model.tok_emb.weight" in keys and "model.out_head.weight" not in keys  # stored once

    model_state, optimizer_state, loaded_metadata = load_checkpoint(path)
    assert model_state["out_head.weight"] is model_state["tok_emb.weight"]  # one array for both names
    assert set(model_state) == set(model.state_dict())
    for name, array in model.state_dict().items():
        assert model_state[name].dtype == array.dtype
        assert np.array_equal(model_state[name], array), name

    # The 128-bit PCG64 state and a NaN survive the JSON metadata exactly.
    assert loaded_metadata["trainer"]["rng"] == metadata["trainer"]["rng"]
    assert loaded_metadata["trainer"]["step"] == 2
    assert loaded_metadata["trainer"]["loss"][0] == 1.5 and np.isnan(loaded_metadata["trainer"]["loss"][1])
    assert loaded_metadata["format_version"] == FORMAT_VERSION
    assert "aliases" not in loaded_metadata and "optimizer" not in loaded_metadata

    # Into a fresh model and optimizer: identical weights, tie kept, identical optimizer state,
    # and the next step is the same in both.
    fresh_model = GPTModel(TINY, rng=99)
    fresh_optimizer = AdamW(fresh_model.parameters(), lr=1e-2, weight_decay=0.1)
    fresh_model.load_state_dict(model_state)
    fresh_optimizer.load_state_dict(unflatten_state_dict(*optimizer_state))
    assert fresh_model.out_head.weight is fresh_model.tok_emb.weight
    original, restored = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert original["param_groups"] == restored["param_groups"]
    for index, state in original["state"].items():
        assert state["step"] == restored["state"][index]["step"] == 2
        assert np.array_equal(state["exp_avg"], restored["state"][index]["exp_avg"])
        assert np.array_equal(state["exp_avg_sq"], restored["state"][index]["exp_avg_sq"])
    ids = np.arange(16).reshape(2, 8) % TINY["vocab_size"]
    for m, opt in [(model, optimizer), (fresh_model, fresh_optimizer)]:
        opt.zero_grad()
        calc_loss_batch(ids, (ids + 1) % TINY["vocab_size"], m).backward()
        opt.step()
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert np.array_equal(a, b), name


def test_weights_only_and_float64(tmp_path):
    model = GPTModel({**TINY, "tie_weights": False}, rng=1).to(np.float64)
    path = str(tmp_path / "weights.safetensors")
    save_checkpoint(path, model.state_dict(), None, {"note": "weights only"})
    model_state, optimizer_state, metadata = load_checkpoint(path)
    assert optimizer_state is None and metadata["note"] == "weights only"
    assert model_state["out_head.weight"] is not model_state["tok_emb.weight"]
    assert all(array.dtype == np.float64 for array in model_state.values())


def test_metadata_that_json_cannot_encode_raises_before_writing(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    with pytest.raises(TypeError):
        save_checkpoint(str(path), {"w": np.zeros(2, np.float32)}, None, {"bad": object()})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch, failure):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(str(path), {"w": np.ones(3, np.float32)}, None, {"step": 1})
    before = path.read_bytes()

    def failing_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as file:
            file.write(b"half a checkpoint")  # a partial write, then the failure
        raise failure

    monkeypatch.setattr(checkpoint, "save_file", failing_save_file)
    with pytest.raises(type(failure)):
        save_checkpoint(str(path), {"w": np.zeros(3, np.float32)}, None, {"step": 2})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.safetensors"]
    monkeypatch.undo()
    assert load_checkpoint(str(path))[2]["step"] == 1


def test_written_file_has_ordinary_permissions(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(str(path), {"w": np.ones(3, np.float32)}, None, {})
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_missing_file(tmp_path):
    path = str(tmp_path / "nothing.safetensors")
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nothing.safetensors"):
        load_checkpoint(path)


def test_safetensors_file_that_is_not_a_minigpt_checkpoint(tmp_path):
    path = str(tmp_path / "model.safetensors")
    save_file({"wte.weight": np.zeros((2, 2), np.float32)}, path)  # e.g. Hugging Face weights
    with pytest.raises(ValueError, match="not a minigpt checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"hello world", b"\x08\x00\x00\x00\x00\x00\x00\x00{not json"])
def test_file_that_is_not_safetensors(tmp_path, content):
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_checkpoint(str(path))


def test_newer_format_version_is_refused(tmp_path):
    path = str(tmp_path / "future.safetensors")
    save_file({"model.w": np.zeros(2, np.float32)}, path, metadata={"minigpt": json.dumps({"format_version": FORMAT_VERSION + 1})})
    with pytest.raises(ValueError, match=f"format {FORMAT_VERSION + 1}"):
        load_checkpoint(path)


def test_loading_into_a_model_of_another_shape_is_a_clear_error(tmp_path):
    model, _ = trained_model_and_optimizer()
    path = str(tmp_path / "checkpoint.safetensors")
    save_checkpoint(path, model.state_dict(), None, {})
    model_state, _, _ = load_checkpoint(path)
    other = GPTModel({**TINY, "emb_dim": 32}, rng=0)
    with pytest.raises(ValueError, match="shape"):
        other.load_state_dict(model_state)
