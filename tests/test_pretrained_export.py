"""GPT-2 weights by name (through a fake hub), the book's load_weights_into_gpt, and export.

- `GPTModel.from_pretrained("gpt2-small")` downloads `config.json` and `model.safetensors` from
  `$HF_ENDPOINT` (here a local server, tests/support/fake_hub.py, serving the tiny golden checkpoint as if
  it were openai-community/gpt2) into `$MINIGPT_HOME`, then loads them; the logits equal the
  golden ones as in test_pretrained.py (1e-4 in float32).
- `load_weights_into_gpt` fills a model built from a config dict, as in the book's chapter 5.5.
- `save_pretrained` writes the Hugging Face layout: the golden checkpoint goes through a load and
  a save unchanged (every tensor bit for bit, the config's fields), and any minigpt model, also
  with the book's qkv_bias=False and an untied head, reloads with bit-identical logits.
"""

import json
import os

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from support.fake_hub import FakeHub
from minigpt.hub import DownloadError
from minigpt.model import GPTModel
from minigpt.pretrained import config_from_hf, load_weights_into_gpt

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "gpt2-tiny")


def fixture_bytes(name: str) -> bytes:
    with open(os.path.join(FIXTURE, name), "rb") as file:
        return file.read()


@pytest.fixture(scope="module")
def expected():
    with np.load(os.path.join(FIXTURE, "expected.npz")) as data:
        return {name: data[name] for name in data.files}


def test_from_pretrained_by_name_downloads_once_and_matches_transformers(tmp_path, monkeypatch, expected):
    files = {"openai-community/gpt2": {name: fixture_bytes(name) for name in ("config.json", "model.safetensors")}}
    with FakeHub(files) as hub_server:
        monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
        monkeypatch.setenv("MINIGPT_HOME", str(tmp_path))
        model = GPTModel.from_pretrained("gpt2-small")
        assert os.path.isfile(tmp_path / "openai-community" / "gpt2" / "model.safetensors")
        requests = len(hub_server.requests)
        GPTModel.from_pretrained("gpt2-small")  # from the cache: no request
        assert len(hub_server.requests) == requests
    logits = model(expected["input_ids"]).data
    np.testing.assert_allclose(logits, expected["logits"], atol=1e-4, rtol=0)


def test_from_pretrained_by_name_without_network_names_the_url(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("MINIGPT_HOME", str(tmp_path))
    with pytest.raises(DownloadError, match=r"openai-community/gpt2-medium/resolve/main/config\.json.*save it as"):
        GPTModel.from_pretrained("gpt2-medium")


def test_unknown_name_or_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="gpt2-small, gpt2-medium, gpt2-large, gpt2-xl"):
        GPTModel.from_pretrained("gpt2-huge")


def test_load_weights_into_gpt_as_in_the_book(expected):
    with open(os.path.join(FIXTURE, "config.json"), encoding="utf-8") as file:
        cfg = config_from_hf(json.load(file)).to_dict()
    model = GPTModel(cfg, rng=0)  # random weights, then OpenAI's (here: the golden) ones
    params = load_file(os.path.join(FIXTURE, "model.safetensors"))
    load_weights_into_gpt(model, params).eval()
    np.testing.assert_allclose(model(expected["input_ids"]).data, expected["logits"], atol=1e-4, rtol=0)


def test_load_weights_into_gpt_names_what_does_not_fit():
    with open(os.path.join(FIXTURE, "config.json"), encoding="utf-8") as file:
        cfg = config_from_hf(json.load(file), qkv_bias=False)  # the book's default: no qkv bias
    params = load_file(os.path.join(FIXTURE, "model.safetensors"))
    with pytest.raises(ValueError, match=r"unexpected tensors: h\.0\.attn\.c_attn\.bias"):
        load_weights_into_gpt(GPTModel(cfg, rng=0), params)
    params.pop("transformer.ln_f.bias")
    with pytest.raises(ValueError, match=r"missing tensors: ln_f\.bias"):
        load_weights_into_gpt(GPTModel(cfg.replace(qkv_bias=True), rng=0), params)


def test_export_of_the_golden_checkpoint_reproduces_its_tensors_and_config(tmp_path):
    model = GPTModel.from_pretrained(FIXTURE)
    model.save_pretrained(tmp_path / "export")
    original = load_file(os.path.join(FIXTURE, "model.safetensors"))
    exported = load_file(str(tmp_path / "export" / "model.safetensors"))
    assert set(exported) == set(original)
    for name, array in original.items():
        np.testing.assert_array_equal(exported[name], array, err_msg=name)
    with safe_open(str(tmp_path / "export" / "model.safetensors"), framework="np") as file:
        assert file.metadata() == {"format": "pt"}  # transformers refuses files without it
    with open(os.path.join(FIXTURE, "config.json"), encoding="utf-8") as file:
        golden_config = json.load(file)
    with open(tmp_path / "export" / "config.json", encoding="utf-8") as file:
        exported_config = json.load(file)
    for key in ("model_type", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "activation_function",
                "layer_norm_epsilon", "tie_word_embeddings", "architectures"):
        assert exported_config.get(key, True) == golden_config.get(key, True), key


@pytest.mark.parametrize("qkv_bias, tie_weights", [(False, False), (True, True), (False, True)])
def test_export_then_load_gives_identical_logits(tmp_path, qkv_bias, tie_weights):
    cfg = dict(vocab_size=97, context_length=16, emb_dim=32, n_heads=4, n_layers=2, drop_rate=0.1,
               qkv_bias=qkv_bias, tie_weights=tie_weights)
    model = GPTModel(cfg, rng=3).eval()
    ids = np.random.default_rng(0).integers(0, 97, (2, 16))
    model.save_pretrained(tmp_path)
    reloaded = GPTModel.from_pretrained(tmp_path)
    assert reloaded.cfg.tie_weights == tie_weights and reloaded.cfg.drop_rate == pytest.approx(0.1)
    np.testing.assert_array_equal(reloaded(ids).data, model(ids).data)
    assert not os.path.exists(tmp_path / "config.json.tmp")


def test_cli_download_and_generate_with_a_pretrained_model(tmp_path, monkeypatch, capsys):
    from minigpt.cli import main

    files = {"openai-community/gpt2": {name: fixture_bytes(name) for name in ("config.json", "model.safetensors")}}
    with FakeHub(files) as hub_server:
        monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
        monkeypatch.setenv("MINIGPT_HOME", str(tmp_path))
        assert main(["download", "gpt2-small"]) == 0
        assert str(tmp_path / "openai-community" / "gpt2") in capsys.readouterr().out
        # The tiny golden model has GPT-2's token ids only below 512: a prompt of such tokens.
        assert main(["generate", "--model", "gpt2-small", "--prompt", "a b", "--max-new-tokens", "3"]) == 0
        assert capsys.readouterr().out.startswith("a b")
    with pytest.raises(SystemExit, match="minigpt download: error: unknown model 'gpt3'"):
        main(["download", "gpt3"])
    with pytest.raises(SystemExit, match="minigpt generate: error: --model nowhere/model.safetensors"):
        main(["generate", "--model", "nowhere/model.safetensors"])


def test_truncated_or_foreign_weight_files_are_named(tmp_path):
    data = fixture_bytes("model.safetensors")
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match="file ends inside tensor"):
        GPTModel.from_pretrained(tmp_path / "cut.safetensors")
    (tmp_path / "text.safetensors").write_bytes(b"hello, this is not a checkpoint at all")
    with pytest.raises(ValueError, match="not a safetensors file"):
        GPTModel.from_pretrained(tmp_path / "text.safetensors")


def test_loading_reads_weights_straight_into_the_parameters(tmp_path):
    """The loaded weights are arrays of their own, writeable (not views of a mapped file)."""
    model = GPTModel.from_pretrained(FIXTURE)
    for name, parameter in model.named_parameters():
        assert parameter.data.flags.owndata and parameter.data.flags.writeable, name
