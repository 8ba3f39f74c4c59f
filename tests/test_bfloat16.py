"""bfloat16: reading, rounding and writing against PyTorch's own (tests/fixtures/bfloat16, made by
scripts/make_bfloat16_fixture.py with torch 2.13), and the engine's rule: bfloat16 values in
float32 arrays, gradients straight through (autograd/bf16.py)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import autograd as torch
from autograd.bf16 import is_bfloat16, round_to_bfloat16, to_bfloat16_array
from minigpt import nn
from minigpt.checkpoint import atomic_save_safetensors
from minigpt.hf_weights import SafetensorsReader, cast_for_file

ml_dtypes = pytest.importorskip("ml_dtypes")  # the test extra installs it; an honest skip otherwise

FIXTURE = Path(__file__).parent / "fixtures" / "bfloat16" / "torch_bf16.safetensors"


def _bits(array: np.ndarray) -> np.ndarray:
    return np.asarray(array).view(np.uint16)


@pytest.fixture(scope="module")
def torch_file():
    with SafetensorsReader(str(FIXTURE)) as reader:
        return {name: reader.read(name) for name in reader.keys()}


def test_reader_reads_bf16_bit_for_bit(torch_file):
    # The reader's BF16 arrays equal the safetensors library's own reading of the file, bit for bit.
    assert torch_file["weight"].dtype == np.dtype(ml_dtypes.bfloat16)
    reference = load_file(str(FIXTURE))
    for name, array in torch_file.items():
        assert array.dtype == reference[name].dtype and array.shape == reference[name].shape
        assert array.tobytes() == reference[name].tobytes(), name


@pytest.mark.parametrize("case", ["tricky", "random"])
def test_rounding_matches_torch(torch_file, case):
    # float32 -> bfloat16 is round-to-nearest-even, as PyTorch: ties, subnormals, overflow, NaN.
    ours = to_bfloat16_array(torch_file[f"{case}_f32"])
    expected = torch_file[f"{case}_bf16"]
    nan = np.isnan(expected.astype(np.float32))
    assert np.array_equal(np.isnan(ours.astype(np.float32)), nan)
    assert np.array_equal(_bits(ours)[~nan], _bits(expected)[~nan])
    # The engine's rounding (float32 arrays holding bfloat16 values) agrees.
    rounded = torch.tensor(torch_file[f"{case}_f32"]).to(torch.bfloat16).data
    assert rounded.dtype == np.float32
    assert np.array_equal(rounded[~nan], expected.astype(np.float32)[~nan])


def test_float64_rounds_through_float32_as_torch(torch_file):
    values = torch_file["random_f32"].astype(np.float64) * (1.0 + 2.0**-30)
    assert np.array_equal(round_to_bfloat16(values), torch_file["random_f64_bf16"].astype(np.float32))


def test_ties_go_to_even():
    one_and_half_step = np.float32(1 + 2.0**-8)  # halfway between 1 and 1 + 2**-7
    three_halves = np.float32(1 + 3 * 2.0**-8)  # halfway between 1 + 2**-7 and 1 + 2**-6
    assert round_to_bfloat16(np.array([one_and_half_step, three_halves])).tolist() == [1.0, 1 + 2.0**-6]


def test_write_roundtrip_is_exact(tmp_path, torch_file):
    # Our writer stores BF16 that reads back bit for bit, and in the header's BF16 code.
    path = str(tmp_path / "out.safetensors")
    atomic_save_safetensors(path, cast_for_file({"w": torch_file["weight"].astype(np.float32),
                                                 "ids": np.arange(3)}, torch.bfloat16))
    with SafetensorsReader(path) as reader:
        assert reader._header["w"]["dtype"] == "BF16" and reader._header["ids"]["dtype"] == "I64"
        assert reader.read("w").tobytes() == torch_file["weight"].tobytes()
    # And the safetensors library (what PyTorch's loader runs) reads it back the same.
    assert load_file(path)["w"].tobytes() == torch_file["weight"].tobytes()


def test_gpt2_checkpoint_saved_in_bf16_loads(tmp_path):
    from minigpt.model import GPTModel
    model = GPTModel({"vocab_size": 50, "context_length": 8, "emb_dim": 8, "n_heads": 2, "n_layers": 1,
                      "drop_rate": 0.0, "qkv_bias": True}, rng=0)
    model.to(torch.bfloat16)
    from minigpt.hf_weights import save_pretrained
    save_pretrained(model, tmp_path, dtype=torch.bfloat16)
    with SafetensorsReader(str(tmp_path / "model.safetensors")) as reader:
        assert {reader._header[name]["dtype"] for name in reader.keys()} == {"BF16"}
    loaded = GPTModel.from_pretrained(str(tmp_path))
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert np.array_equal(np.asarray(a), np.asarray(b)), name  # already bfloat16 values: lossless


def test_engine_rule_values_rounded_float32_kept_gradient_straight_through():
    x = torch.tensor([1.0, 1 + 2.0**-8, 3.14159], requires_grad=True)
    y = x.to(torch.bfloat16)
    assert y.dtype == torch.float32 and y.data.tolist() == [1.0, 1.0, 3.140625]
    upstream = np.array([0.5, -2.0, 3.0], np.float32)
    (y * torch.tensor(upstream)).sum().backward()
    assert np.array_equal(x.grad, upstream)
    assert np.array_equal(x.bfloat16().data, y.data)


def test_layers_and_modules_take_bfloat16():
    linear = nn.Linear(5, 3, dtype=torch.bfloat16, rng=0)
    embedding = nn.Embedding(7, 4, dtype=torch.bfloat16, rng=0)
    for parameter in [*linear.parameters(), *embedding.parameters()]:
        assert parameter.dtype == np.float32
        assert np.array_equal(parameter.data, round_to_bfloat16(parameter.data))
        assert np.any(parameter.data.view(np.uint32) & 0xFFFF0000)  # not all zero
    plain = nn.Linear(5, 3, rng=0)
    assert not np.array_equal(plain.weight.data, round_to_bfloat16(plain.weight.data))
    plain.to(torch.bfloat16)
    assert np.array_equal(plain.weight.data, linear.weight.data)
    assert torch.zeros(2, 3, dtype=torch.bfloat16).dtype == torch.float32
    for made in (torch.randn(50, dtype=torch.bfloat16), torch.rand(50, dtype=torch.bfloat16),
                 torch.arange(0.0, 5.0, 0.01, dtype=torch.bfloat16), torch.full((3,), 0.1, dtype=torch.bfloat16),
                 torch.linspace(0, 1, 30, dtype=torch.bfloat16)):
        assert made.dtype == np.float32 and not np.any(made.data.view(np.uint32) & 0xFFFF)
    assert torch.tensor([1.001], dtype=torch.bfloat16).item() == 1.0
    # A bfloat16 array (as read from a file) makes a float32 parameter and tensor.
    stored = to_bfloat16_array(np.array([1.5, -2.25], np.float32))
    assert nn.Parameter(stored).dtype == np.float32 and torch.tensor(stored).dtype == np.float32
    # A state dict of bfloat16 arrays (safetensors' load_file of a BF16 file) loads exactly.
    plain.load_state_dict({"weight": to_bfloat16_array(linear.weight.data), "bias": to_bfloat16_array(linear.bias.data)})
    assert np.array_equal(plain.weight.data, linear.weight.data) and plain.weight.dtype == np.float32


def test_is_bfloat16_names():
    assert is_bfloat16(torch.bfloat16) and is_bfloat16("bfloat16") and is_bfloat16(np.dtype(ml_dtypes.bfloat16))
    assert not is_bfloat16(np.float32) and not is_bfloat16(None) and not is_bfloat16("float32")


def test_missing_ml_dtypes_names_the_extra(monkeypatch):
    import autograd.bf16 as module
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)  # makes `import ml_dtypes` raise ImportError
    with pytest.raises(ImportError, match=r'pip install "minigpt\[bfloat16\]"'):
        module.round_to_bfloat16(np.ones(2, np.float32))
    with pytest.raises(ImportError, match="ml_dtypes"):
        torch.tensor([1.0]).to(torch.bfloat16)
    assert module.is_bfloat16(torch.bfloat16) and repr(torch.bfloat16) == "torch.bfloat16"


def test_autograd_does_not_import_ml_dtypes():
    # ml_dtypes' C extension takes about a second to import: only bfloat16 work pays for it.
    code = "import sys, autograd, minigpt.nn; print('ml_dtypes' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
