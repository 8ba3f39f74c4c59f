"""Book chapter 6 (fine-tuning for classification): the chapter's deterministic values and the
properties of minigpt.finetune.classification.

- The data: the bundled SMS Spam Collection has 5,574 messages (747 spam); balancing keeps 1,494,
  the split gives the book's 1,045 / 149 / 300, and batches of 8 give its 130 / 19 / 38 batches.
- The dataset: right padding with 50256 to the longest training text, truncation to an explicit
  max_length, the context check against `pos_emb.weight.shape[0]`.
- The model: a 2-class head gives outputs (1, 4, 2) for "Do you have time" ([5211, 345, 423, 640]);
  the book's recipe leaves the last block, the final LayerNorm and the head trainable, and no graph
  reaches the frozen blocks.
- Which position is classified: "last" is position T - 1; "last_non_padding" is each row's last
  real token, and appending padding never changes a prediction (hypothesis).
- The loop: train_classifier_simple counts examples, evaluates every eval_freq steps and measures
  accuracy per epoch, and learns a separable toy task.
"""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from minigpt.data import DataLoader
from minigpt.finetune.classification import (
    SpamDataset, calc_accuracy_loader, calc_loss_batch, calc_loss_loader, classify_review, classify_texts,
    create_balanced_dataset, evaluate_model, last_token_positions, load_spam_data, plot_values, random_split,
    read_csv, replace_output_head, select_logits, set_trainable, train_classifier_simple, write_csv,
)
from minigpt.model import GPTModel
from minigpt.optim import AdamW
from minigpt.tokenizer import get_encoding

TINY = dict(vocab_size=50257, context_length=40, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0, qkv_bias=False)


@pytest.fixture(scope="module")
def tokenizer():
    return get_encoding("gpt2")


@pytest.fixture(scope="module")
def splits():
    return random_split(create_balanced_dataset(load_spam_data(), seed=123), 0.7, 0.1, seed=123)


def classifier(seed=0, trainable="last-block", **changes):
    model = GPTModel({**TINY, **changes}, rng=seed, init="gpt2")  # stands for pretrained GPT-2: its init
    replace_output_head(model, 2, rng=seed)
    return set_trainable(model, trainable)


# ---- 6.2 the data --------------------------------------------------------------------------


def test_bundled_spam_data_has_every_line():
    data = load_spam_data()
    assert len(data) == 5574  # the file's lines; the book's pandas call merges a few into 5,572
    labels = [label for label, _ in data]
    assert labels.count("spam") == 747 and labels.count("ham") == 4827
    assert data[0] == ("ham", "Go until jurong point, crazy.. Available only in bugis n great world la e buffet... Cine there got amore wat...")
    assert sum('"' in text for _, text in data) > 0  # quotes are kept as they are


def test_any_label_tab_text_file_loads(tmp_path):
    path = tmp_path / "reviews.tsv"
    path.write_text('positive\tGreat "film", loved it\n\nnegative\tA\ttab inside\n', encoding="utf-8")
    assert load_spam_data(path) == [("positive", 'Great "film", loved it'), ("negative", "A\ttab inside")]
    path.write_text("no tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 1 is not 'label<TAB>text'"):
        load_spam_data(path)


def test_balanced_dataset_and_the_books_split_sizes(splits):
    balanced = create_balanced_dataset(load_spam_data(), seed=123)
    assert len(balanced) == 1494
    assert [label for label, _ in balanced].count("spam") == 747
    assert balanced == create_balanced_dataset(load_spam_data(), seed=123)  # seeded
    assert balanced != create_balanced_dataset(load_spam_data(), seed=7)
    train, validation, test = splits
    assert (len(train), len(validation), len(test)) == (1045, 149, 300)  # the book's sizes
    assert sorted(train + validation + test) == sorted(balanced)


def test_random_split_checks_fractions():
    with pytest.raises(ValueError, match="train_frac"):
        random_split(list(range(10)), 1.5, 0.1)
    with pytest.raises(ValueError, match="<= 1"):
        random_split(list(range(10)), 0.7, 0.4)


def test_csv_round_trip(tmp_path):
    records = [("ham", 'He said "hi", then left'), ("spam", "Win £1000, now!"), (1, "an int label")]
    path = write_csv(records, tmp_path / "train.csv")
    assert open(path, encoding="utf-8").readline().strip() == "Label,Text"
    assert read_csv(path) == [("ham", 'He said "hi", then left'), ("spam", "Win £1000, now!"), ("1", "an int label")]


# ---- 6.3 the dataset -----------------------------------------------------------------------


def test_loaders_have_the_books_batch_counts(splits, tokenizer):
    train, validation, test = splits
    train_set = SpamDataset(train, tokenizer)
    validation_set = SpamDataset(validation, tokenizer, max_length=train_set.max_length, label_names=train_set.label_names)
    test_set = SpamDataset(test, tokenizer, max_length=train_set.max_length, label_names=train_set.label_names)
    train_loader = DataLoader(train_set, batch_size=8, shuffle=True, drop_last=True)
    assert (len(train_loader), len(DataLoader(validation_set, batch_size=8)), len(DataLoader(test_set, batch_size=8))) == (130, 19, 38)
    inputs, targets = next(iter(train_loader))
    assert inputs.shape == (8, train_set.max_length) and targets.shape == (8,)
    assert inputs.dtype == np.int64 and targets.dtype == np.int64
    assert train_set.label_names == ("ham", "spam")  # ham 0, spam 1 as the book maps them
    assert train_set.max_length == max(len(tokenizer.encode(text)) for _, text in train)


def test_spam_dataset_pads_right_and_truncates_only_when_asked(tokenizer, tmp_path):
    records = [("ham", "Do you have time"), ("spam", "Win")]
    dataset = SpamDataset(records, tokenizer)
    assert dataset.max_length == 4
    assert dataset.encoded_texts == [[5211, 345, 423, 640], [16643, 50256, 50256, 50256]]
    assert dataset[1][0].tolist() == [16643, 50256, 50256, 50256] and int(dataset[1][1]) == 1
    cut = SpamDataset(records, tokenizer, max_length=2)
    assert cut.encoded_texts[0] == [5211, 345] and cut.num_truncated == 1
    # From CSV, as the book (csv_file=...), with the labels written as 0/1.
    path = write_csv([(0, "Do you have time"), (1, "Win")], tmp_path / "train.csv")
    from_csv = SpamDataset(csv_file=path, tokenizer=tokenizer)
    assert from_csv.labels.tolist() == [0, 1] and from_csv.encoded_texts == dataset.encoded_texts


def test_spam_dataset_context_check(tokenizer):
    records = [("ham", "one two three four five six")]
    with pytest.raises(ValueError, match="more than the model's context of 3 tokens; pass truncation=True"):
        SpamDataset(records, tokenizer, context_length=3)
    assert SpamDataset(records, tokenizer, context_length=3, truncation=True).max_length == 3
    with pytest.raises(ValueError, match="label 'eggs' is not one of label_names"):
        SpamDataset([("eggs", "x")], tokenizer, label_names=("ham", "spam"))


# ---- 6.5 the model -------------------------------------------------------------------------


def test_classification_head_outputs_and_the_books_recipe(tokenizer):
    model = classifier()
    ids = np.array([tokenizer.encode("Do you have time")])
    assert ids.tolist() == [[5211, 345, 423, 640]]
    assert model(ids).shape == (1, 4, 2)  # (batch, num_tokens, num_classes)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    expected = {name for name, _ in model.named_parameters() if name.startswith(("trf_blocks.1.", "final_norm.", "out_head."))}
    assert trainable == expected and "out_head.bias" in trainable
    assert model.num_parameters(trainable_only=True) == sum(p.data.size for n, p in model.named_parameters() if n in expected)
    assert {n for n, p in set_trainable(model, "head").named_parameters() if p.requires_grad} == {"out_head.weight", "out_head.bias"}
    assert all(p.requires_grad for p in set_trainable(model, "all").parameters())
    with pytest.raises(ValueError, match="trainable must be one of"):
        set_trainable(model, "last_block")


def test_frozen_blocks_record_no_graph_and_get_no_gradient():
    model = classifier()
    seen = {}
    last_block = model.trf_blocks[-1]
    original = last_block.forward
    last_block.forward = lambda x: (seen.setdefault("input", x), original(x))[1]
    loss = calc_loss_batch(np.array([[1, 2, 3, 50256]]), np.array([1]), model)
    # The last block's input comes from frozen layers only: no graph, nothing kept for backward.
    assert not seen["input"].requires_grad and seen["input"].grad_fn is None
    loss.backward()
    for name, parameter in model.named_parameters():
        assert (parameter.grad is not None) == parameter.requires_grad, name
    # The optimizer holds moments for the trainable parameters only.
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    assert sum(flat.exp_avg.size for flat in optimizer._flat_groups) == model.num_parameters(trainable_only=True)


# ---- 6.6 which position, loss and accuracy --------------------------------------------------


def test_position_selection():
    ids = np.array([[5, 6, 7, 50256, 50256], [5, 50256, 6, 7, 8], [50256, 50256, 50256, 50256, 50256]])
    assert last_token_positions(ids).tolist() == [2, 4, 0]
    logits = autograd.tensor(np.random.default_rng(0).standard_normal((3, 5, 2)), requires_grad=True)
    np.testing.assert_array_equal(select_logits(logits, ids, "last").data, logits.data[:, -1])
    selected = select_logits(logits, ids)
    np.testing.assert_array_equal(selected.data, logits.data[[0, 1, 2], [2, 4, 0]])
    # The gradient reaches the selected positions only.
    upstream = np.random.default_rng(1).standard_normal((3, 2))
    (selected * autograd.tensor(upstream)).sum().backward()
    expected = np.zeros((3, 5, 2))
    expected[[0, 1, 2], [2, 4, 0]] = upstream
    np.testing.assert_array_equal(logits.grad, expected)
    with pytest.raises(ValueError, match="pooling must be one of"):
        select_logits(logits, ids, "first")


@settings(max_examples=15)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    extra=st.integers(1, 20),
    seed=st.integers(0, 2**16),
)
def test_appending_padding_never_changes_a_prediction(lengths, extra, seed):
    rng = np.random.default_rng(seed)
    model = classifier(seed=seed % 7).eval()
    width = max(lengths)
    ids = np.full((len(lengths), width), 50256)
    for row, length in enumerate(lengths):
        ids[row, :length] = rng.integers(0, 50256, length)
    padded = np.concatenate([ids, np.full((len(lengths), extra), 50256)], axis=1)
    with autograd.no_grad():
        short = autograd.functional.softmax(select_logits(model(ids), ids), dim=-1).data
        long = autograd.functional.softmax(select_logits(model(padded), padded), dim=-1).data
    np.testing.assert_allclose(long, short, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(long.argmax(axis=1), short.argmax(axis=1))


def test_loss_and_accuracy_over_a_loader(tokenizer):
    records = [("ham", "See you at lunch"), ("spam", "WIN a FREE prize now"), ("ham", "ok"), ("spam", "Call now to claim")]
    dataset = SpamDataset(records, tokenizer)
    loader = DataLoader(dataset, batch_size=2)
    model = classifier()
    losses = [calc_loss_batch(inputs, targets, model, "cpu").item() for inputs, targets in loader]
    assert calc_loss_loader(loader, model, "cpu") == pytest.approx(np.mean(losses), rel=1e-6)
    assert calc_loss_loader(loader, model, num_batches=1) == pytest.approx(losses[0], rel=1e-6)
    with autograd.no_grad():
        predicted = np.argmax(select_logits(model(dataset._inputs), dataset._inputs).data, axis=1)
    assert calc_accuracy_loader(loader, model, "cpu") == np.mean(predicted == dataset.labels)
    assert not model.training  # as the book: accuracy leaves eval mode on
    train_loss, val_loss = evaluate_model(model, loader, loader, "cpu", eval_iter=1)
    assert train_loss == val_loss == pytest.approx(losses[0], rel=1e-6) and model.training
    with pytest.raises(RuntimeError, match="device 'cuda' is not available"):
        calc_loss_batch(dataset._inputs, dataset.labels, model, "cuda")


# ---- 6.7 training, 6.8 using the classifier ---------------------------------------------------


def test_train_classifier_simple_learns_a_toy_task(tokenizer, capsys):
    # Texts made of one repeated word: "yes" means class 1, "no" class 0, of varying lengths.
    rng = np.random.default_rng(0)
    records = [(int(label), " ".join(["yes" if label else "no"] * int(rng.integers(1, 6)))) for label in rng.integers(0, 2, 48)]
    dataset = SpamDataset(records, tokenizer)
    autograd.manual_seed(0)  # the shuffled order (drawn from the default generator, as PyTorch's)
    train_loader = DataLoader(dataset, batch_size=8, shuffle=True, drop_last=True)
    val_loader = DataLoader(dataset, batch_size=8)
    model = classifier(trainable="all")
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3, weight_decay=0.1)
    train_losses, val_losses, train_accs, val_accs, examples_seen = train_classifier_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=3, eval_freq=5, eval_iter=2)
    assert examples_seen == 3 * 6 * 8
    assert len(train_losses) == len(val_losses) == 4  # steps 0, 5, 10, 15 of 18
    assert len(train_accs) == len(val_accs) == 3
    assert calc_accuracy_loader(val_loader, model) == 1.0
    printed = capsys.readouterr().out
    assert "Ep 1 (Step 000000): Train loss" in printed and "Training accuracy: " in printed
    assert classify_review("yes yes", model, tokenizer, "cpu", max_length=dataset.max_length) == "spam"
    assert classify_review("no", model, tokenizer, label_names=("no", "yes")) == "no"


def test_classify_texts_checks_the_context(tokenizer):
    model = classifier(context_length=4)
    with pytest.raises(ValueError, match="text 0 has 6 tokens, more than the model's context of 4"):
        classify_texts(["one two three four five six"], model, tokenizer)
    probabilities = classify_texts(["one two three four five six", "hi"], model, tokenizer, truncation=True)
    assert probabilities.shape == (2, 2) and np.allclose(probabilities.sum(axis=1), 1)
    with pytest.raises(ValueError, match="max_length 5 is more than the model's context of 4"):
        classify_texts(["hi"], model, tokenizer, max_length=5)


def test_classify_texts_wants_a_list_and_classify_review_one_text(tokenizer):
    model = classifier(context_length=8)
    with pytest.raises(TypeError, match="texts must be a list of strings, got one str"):
        classify_texts("abc", model, tokenizer)  # else each character would be classified
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str"):
        classify_texts(["a", 3], model, tokenizer)
    with pytest.raises(TypeError, match="text must be one str"):
        classify_review(["abc"], model, tokenizer)


def test_label_file_with_a_byte_order_mark_spaces_empty_texts_and_other_encodings(tmp_path):
    path = tmp_path / "bom.tsv"
    path.write_bytes(b"\xef\xbb\xbfspam\tWIN now\n ham \thi\n")
    assert load_spam_data(path) == [("spam", "WIN now"), ("ham", "hi")]
    path.write_bytes(b"spam\tWIN\nham\t\n")
    with pytest.raises(ValueError, match=r"bom.tsv: line 2 has the label 'ham' but an empty text"):
        load_spam_data(path)
    path.write_bytes(b"spam\tWIN\nham\tcaf\xe9\n")  # latin-1
    with pytest.raises(ValueError, match=r"not UTF-8 text .* at byte 16, line 2\); convert it, e.g. with `iconv"):
        load_spam_data(path)


def test_plot_values_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_values(np.linspace(0, 5, 3), np.linspace(0, 40, 3), [0.9, 0.5, 0.2], [1.0, 0.6, 0.4],
                       label="accuracy", path=tmp_path / "accuracy.png")
    with open(path, "rb") as file:
        assert file.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not os.path.exists(str(tmp_path / "accuracy.png") + ".tmp.png")


# ---- the chapter's notebook code, typed as the book types it (import lines changed) -------------


def test_the_books_notebook_code_runs_unchanged(tmp_path, monkeypatch, capsys):
    import autograd as torch
    from minigpt import nn  # noqa: F401 - the book's import line; it also adds torch.nn and torch.optim
    from minigpt import tokenizer as tiktoken
    from minigpt.data import DataLoader

    monkeypatch.chdir(tmp_path)
    df = load_spam_data()
    balanced_df = create_balanced_dataset(df)
    balanced_df = [({"ham": 0, "spam": 1}[label], text) for label, text in balanced_df]  # the book's .map
    train_df, validation_df, test_df = random_split(balanced_df, 0.7, 0.1)
    write_csv(train_df[:40], "train.csv")
    write_csv(validation_df[:16], "validation.csv")
    tokenizer = tiktoken.get_encoding("gpt2")
    train_dataset = SpamDataset(csv_file="train.csv", max_length=None, tokenizer=tokenizer)
    val_dataset = SpamDataset(csv_file="validation.csv", max_length=train_dataset.max_length, tokenizer=tokenizer)
    num_workers = 0
    batch_size = 8
    torch.manual_seed(123)
    train_loader = DataLoader(dataset=train_dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers, drop_last=True)
    val_loader = DataLoader(dataset=val_dataset, batch_size=batch_size, num_workers=num_workers, drop_last=False)
    for input_batch, target_batch in train_loader:
        pass
    assert tuple(input_batch.shape) == (8, train_dataset.max_length) and tuple(target_batch.shape) == (8,)

    BASE_CONFIG = {"vocab_size": 50257, "context_length": 160, "drop_rate": 0.0, "qkv_bias": True,
                   "emb_dim": 16, "n_layers": 2, "n_heads": 2}
    model = GPTModel(BASE_CONFIG)
    model.eval()
    for param in model.parameters():
        param.requires_grad = False
    torch.manual_seed(123)
    num_classes = 2
    model.out_head = torch.nn.Linear(in_features=BASE_CONFIG["emb_dim"], out_features=num_classes)
    for param in model.trf_blocks[-1].parameters():
        param.requires_grad = True
    for param in model.final_norm.parameters():
        param.requires_grad = True
    inputs = torch.tensor(tokenizer.encode("Do you have time")).unsqueeze(0)
    with torch.no_grad():
        outputs = model(inputs)
    assert tuple(outputs.shape) == (1, 4, 2)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    torch.manual_seed(123)
    train_accuracy = calc_accuracy_loader(train_loader, model, device, num_batches=2)
    assert 0.0 <= train_accuracy <= 1.0
    # The book's own calc_loss_batch / calc_accuracy_loader move each batch with .to(device), then
    # compare the argmax with the targets: the loader's batches are Tensors, as the book's.
    assert isinstance(input_batch, torch.Tensor) and isinstance(target_batch, torch.Tensor)
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    with torch.no_grad():
        logits = model(input_batch)[:, -1, :]
    book_loss = torch.nn.functional.cross_entropy(logits, target_batch)
    assert book_loss.item() == pytest.approx(calc_loss_batch(input_batch, target_batch, model, device, pooling="last").item(), rel=1e-6)
    correct = (torch.argmax(logits, dim=-1) == target_batch).sum().item()
    assert 0 <= correct <= 8
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=2)
    assert 0.1 < train_loss < 3.0
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)
    num_epochs = 2
    train_losses, val_losses, train_accs, val_accs, examples_seen = train_classifier_simple(
        model, train_loader, val_loader, optimizer, device, num_epochs=num_epochs, eval_freq=50, eval_iter=5)
    assert examples_seen == 2 * 5 * 8 and len(train_accs) == 2 and len(train_losses) == 1
    epochs_tensor = torch.linspace(0, num_epochs, len(train_accs))
    examples_seen_tensor = torch.linspace(0, examples_seen, len(train_accs))
    plot_values(epochs_tensor, examples_seen_tensor, train_accs, val_accs, label="accuracy")
    assert os.path.isfile("accuracy-plot.png")
    text_1 = "You are a winner you have been specially selected to receive $1000 cash or a $2000 award."
    assert classify_review(text_1, model, tokenizer, device, max_length=train_dataset.max_length) in ("spam", "not spam")
    assert "Ep 1 (Step 000000)" in capsys.readouterr().out
