"""`minigpt finetune classify` and `minigpt classify` end to end, on small data and small models.

- From random weights on any label<TAB>text file (labels that are not spam/ham): the run writes the
  splits, a checkpoint with the head and the label names, the history and the plots; `minigpt
  classify` then prints a label and its probability per text, and the accuracy of a --data file.
- From OpenAI's GPT-2 by name (`--model gpt2-small`), served by the fake hub as the tiny golden
  checkpoint (64 wide, 2 layers, vocabulary 512, 32 positions).
- Errors: an existing run, flags of a new model without --init random, texts beyond the vocabulary.
"""

import json
import os

import numpy as np
import pytest
from safetensors import safe_open

from support.fake_hub import FakeHub
from minigpt.cli import main
from minigpt.tokenizer import get_encoding

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "gpt2-tiny")


def write_tsv(path, records):
    path.write_text("".join(f"{label}\t{text}\n" for label, text in records), encoding="utf-8")
    return str(path)


def small_vocabulary_texts(count, word, seed):
    """Texts whose GPT-2 tokens are all below 512 (the tiny checkpoint's vocabulary)."""
    encoding = get_encoding("gpt2")
    rng = np.random.default_rng(seed)
    texts = []
    while len(texts) < count:
        text = word + encoding.decode(rng.integers(256, 512, int(rng.integers(1, 5))).tolist())
        ids = encoding.encode(text)
        if max(ids) < 512 and 0 not in ids and len(ids) < 30:
            texts.append(text.replace("\n", " ").replace("\t", " "))
    return texts


def test_finetune_from_random_weights_then_classify(tmp_path, capsys):
    rng = np.random.default_rng(0)
    words = {"happy": "great fun lovely", "sad": "awful dull boring"}
    records = [(label, " ".join(rng.choice(words[label].split(), 3))) for label in rng.choice(["happy", "sad"], 60)]
    data = write_tsv(tmp_path / "moods.tsv", records)
    out = str(tmp_path / "run")
    arguments = ["finetune", "classify", "--init", "random", "--preset", "tiny", "--emb-dim", "32", "--n-layers", "1",
                 "--context-length", "16", "--trainable", "all", "--lr", "3e-3", "--epochs", "3", "--eval-every", "3",
                 "--data", data, "--out", out, "--threads", "1"]
    assert main(arguments) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "fine-tune:" not in captured.err  # no progress bar when stderr is not a terminal (a log file)
    assert "classes: happy, sad" in printed and "Test accuracy:" in printed
    for name in ("checkpoint.safetensors", "history.json", "train.csv", "validation.csv", "test.csv"):
        assert os.path.isfile(os.path.join(out, name)), name
    with safe_open(os.path.join(out, "checkpoint.safetensors"), framework="np") as file:
        classifier = json.loads(file.metadata()["minigpt"])["classifier"]
        assert file.get_tensor("model.out_head.weight").shape == (2, 32)
    assert classifier["label_names"] == ["happy", "sad"] and classifier["pooling"] == "last_non_padding"
    history = json.load(open(os.path.join(out, "history.json")))
    assert len(history["train_accs"]) == 3

    assert main(["classify", "--checkpoint", out, "lovely fun great", "dull awful"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["happy", "sad"]
    assert all(0.5 <= float(line.split("\t")[1]) <= 1.0 for line in lines)
    assert main(["classify", "--checkpoint", out, "--data", os.path.join(tmp_path, "moods.tsv")]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 60
    assert "accuracy: 100.00% (60 of 60)" in captured.err

    with pytest.raises(SystemExit, match="already holds a run; pass --overwrite"):
        main(arguments)


def test_finetune_gpt2_by_name_through_the_fake_hub(tmp_path, monkeypatch, capsys):
    files = {"openai-community/gpt2": {name: open(os.path.join(FIXTURE, name), "rb").read()
                                       for name in ("config.json", "model.safetensors")}}
    records = [("spam", text) for text in small_vocabulary_texts(20, "X", 1)]
    records += [("ham", text) for text in small_vocabulary_texts(20, "y", 2)]
    data = write_tsv(tmp_path / "tiny.tsv", records)
    out = str(tmp_path / "gpt2")
    with FakeHub(files) as hub_server:
        monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
        monkeypatch.setenv("MINIGPT_HOME", str(tmp_path / "cache"))
        assert main(["finetune", "classify", "--model", "gpt2-small", "--data", data, "--pad-token-id", "0",
                     "--epochs", "1", "--out", out, "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "pretrained gpt2-small" in printed and "trainable (last-block)" in printed
    assert main(["classify", "--checkpoint", out, records[0][1]]) == 0
    label, probability, text = capsys.readouterr().out.rstrip("\n").split("\t")
    assert label in ("ham", "spam") and 0.5 <= float(probability) <= 1 and text == records[0][1]
    # GPT-2's padding token 50256 is outside this checkpoint's 512 ids: a clear error.
    with FakeHub(files) as hub_server:
        monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
        with pytest.raises(SystemExit, match=r"token id 50256 .*outside the model's vocabulary \[0, 512\)"):
            main(["finetune", "classify", "--model", "gpt2-small", "--data", data, "--out", str(tmp_path / "b")])


def test_finetune_flag_errors(tmp_path):
    with pytest.raises(SystemExit, match="use them with --init random"):
        main(["finetune", "classify", "--emb-dim", "32", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--epochs must be >= 1"):
        main(["finetune", "classify", "--epochs", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="no checkpoint there"):
        main(["classify", "--checkpoint", str(tmp_path), "hello"])
    from minigpt.checkpoint import save_checkpoint

    save_checkpoint(str(tmp_path / "checkpoint.safetensors"), {"w": np.zeros(2, np.float32)}, None, {"trainer": {}})
    with pytest.raises(SystemExit, match="no classifier state .*not written by `minigpt finetune classify`"):
        main(["classify", "--checkpoint", str(tmp_path), "hello"])
    with pytest.raises(SystemExit, match="give texts to classify"):
        main(["classify", "--checkpoint", str(tmp_path)])


def test_finetune_data_errors_name_the_file_and_classify_takes_texts_or_data(tmp_path):
    one_label = write_tsv(tmp_path / "one.tsv", [("spam", "WIN now"), ("spam", "free")])
    with pytest.raises(SystemExit, match="one.tsv: at least 2 labels are needed, found 1: 'spam'"):
        main(["finetune", "classify", "--init", "random", "--preset", "tiny", "--data", one_label, "--out", str(tmp_path / "r")])
    bom = tmp_path / "bom.tsv"
    bom.write_bytes(b"\xef\xbb\xbfspam\tWIN now\n ham\thi\nham\t\n")
    with pytest.raises(SystemExit, match="bom.tsv: .*line 3 has the label 'ham' but an empty text"):
        main(["finetune", "classify", "--init", "random", "--preset", "tiny", "--data", str(bom), "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="give texts or --data, not both"):
        main(["classify", "--checkpoint", str(tmp_path), "--data", one_label, "extra text"])


def test_a_run_of_the_wrong_kind_points_to_the_right_command_or_flag(tmp_path):
    from minigpt.checkpoint import save_checkpoint

    classifier_run, train_run = tmp_path / "classifier", tmp_path / "train"
    classifier_run.mkdir(), train_run.mkdir()
    save_checkpoint(str(classifier_run / "checkpoint.safetensors"), {"w": np.zeros(2, np.float32)}, None, {"classifier": {}})
    with pytest.raises(SystemExit, match="it is a classifier run of `minigpt finetune classify`: use `minigpt classify --checkpoint"):
        main(["generate", "--checkpoint", str(classifier_run), "--prompt", "hi"])
    save_checkpoint(str(train_run / "checkpoint.safetensors"), {"w": np.zeros(2, np.float32)}, None, {"trainer": {}})
    data = write_tsv(tmp_path / "two.tsv", [("spam", "WIN"), ("ham", "hi")] * 10)
    with pytest.raises(SystemExit, match=f"this is a minigpt run .*: use --checkpoint {train_run}"):
        main(["finetune", "classify", "--model", str(train_run), "--data", data, "--batch-size", "1", "--out", str(tmp_path / "r")])
