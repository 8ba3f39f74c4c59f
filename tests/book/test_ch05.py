"""Chapter 5, "Pretraining on unlabeled data", run in the book's style on minigpt.

Exact: the text's characters and tokens, the loaders' batch counts and token totals, the
cross-entropy spelled out step by step equal to F.cross_entropy, the decoding toy (softmax,
temperature, top-k: its logits are fixed numbers), the book's `assign`. In kind: an untrained
model's loss is near ln(50257) = 10.8, the training loss falls, the sampling counts follow the
probabilities. The model is a small config (the book's 124M model takes minutes per epoch on a
CPU); the data, the loaders and the functions are the book's.
"""

import math

import matplotlib
import numpy as np
import pytest

import autograd as torch
from minigpt import nn  # noqa: F401 - the book's import line; it also adds torch.nn and torch.optim
from minigpt import tokenizer as tiktoken
from minigpt.data import create_dataloader
from minigpt.generate import generate, generate_text_simple, text_to_token_ids, token_ids_to_text
from minigpt.model import GPTModel
from minigpt.teaching import assign, print_sampled_tokens, softmax_with_temperature
from minigpt.train import calc_loss_batch, calc_loss_loader, evaluate_model, plot_losses, train_model_simple

matplotlib.use("Agg")

from tests.book.test_ch02 import read_verdict  # noqa: E402 - the same short story

# The book's GPT_CONFIG_124M with context 256, shrunk in width and depth to run in seconds.
GPT_CONFIG = {"vocab_size": 50257, "context_length": 256, "emb_dim": 32, "n_heads": 2, "n_layers": 1, "drop_rate": 0.1, "qkv_bias": False}


def book_loaders():
    text_data = read_verdict()
    train_ratio = 0.90
    split_idx = int(train_ratio * len(text_data))
    torch.manual_seed(123)
    train_loader = create_dataloader(text_data[:split_idx], batch_size=2, max_length=256, stride=256, drop_last=True, shuffle=True, num_workers=0)
    val_loader = create_dataloader(text_data[split_idx:], batch_size=2, max_length=256, stride=256, drop_last=False, shuffle=False, num_workers=0)
    return train_loader, val_loader


def test_5_1_1_text_to_token_ids_and_back():
    tokenizer = tiktoken.get_encoding("gpt2")
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG)
    model.eval()
    token_ids = generate_text_simple(model=model, idx=text_to_token_ids("Every effort moves you", tokenizer), max_new_tokens=10, context_size=256)
    assert token_ids.shape == (1, 14)
    assert token_ids_to_text(token_ids, tokenizer).startswith("Every effort moves you")


def test_5_1_2_the_loss_step_by_step():
    inputs = torch.tensor([[16833, 3626, 6100], [40, 1107, 588]])  # "every effort moves", "I really like"
    targets = torch.tensor([[3626, 6100, 345], [1107, 588, 11311]])  # " effort moves you", " really like chocolate"
    tokenizer = tiktoken.get_encoding("gpt2")
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG)
    model.eval()
    with torch.no_grad():
        logits = model(inputs)
    probas = torch.softmax(logits, dim=-1)
    assert probas.shape == (2, 3, 50257)
    token_ids = torch.argmax(probas, dim=-1, keepdim=True)
    assert token_ids.shape == (2, 3, 1)
    assert token_ids_to_text(targets[0], tokenizer) == " effort moves you"
    assert isinstance(token_ids_to_text(token_ids[0].flatten(), tokenizer), str)

    target_probas_1 = probas[0, [0, 1, 2], targets[0]]
    target_probas_2 = probas[1, [0, 1, 2], targets[1]]
    log_probas = torch.log(torch.cat((target_probas_1, target_probas_2)))
    avg_log_probas = torch.mean(log_probas)
    neg_avg_log_probas = avg_log_probas * -1

    logits_flat = logits.flatten(0, 1)
    targets_flat = targets.flatten()
    assert logits_flat.shape == (6, 50257) and targets_flat.shape == (6,)
    loss = torch.nn.functional.cross_entropy(logits_flat, targets_flat)
    assert loss.item() == pytest.approx(neg_avg_log_probas.item(), rel=1e-5)  # the book: both 10.7940
    assert abs(loss.item() - math.log(50257)) < 1.0  # an untrained model is close to uniform
    perplexity = torch.exp(loss)
    assert perplexity.item() == pytest.approx(math.exp(loss.item()), rel=1e-5)  # the book: 48725.8


def test_5_1_3_data_loaders_and_initial_losses():
    text_data = read_verdict()
    tokenizer = tiktoken.get_encoding("gpt2")
    assert len(text_data) == 20479 and len(tokenizer.encode(text_data)) == 5145
    assert text_data[-99:].endswith("there's no exterminating our kind of art.\"")
    train_loader, val_loader = book_loaders()
    assert [tuple(x.shape) for x, y in train_loader] == [(2, 256)] * 9
    assert [tuple(y.shape) for x, y in val_loader] == [(2, 256)]
    train_tokens = sum(input_batch.size for input_batch, target_batch in train_loader)
    val_tokens = sum(input_batch.size for input_batch, target_batch in val_loader)
    assert (train_tokens, val_tokens, train_tokens + val_tokens) == (4608, 512, 5120)

    device = torch.device("cpu")
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG)
    model.to(device)  # no assignment needed, as the book says
    with torch.no_grad():
        train_loss = calc_loss_loader(train_loader, model, device, num_batches=2)  # the book: all 9
        val_loss = calc_loss_loader(val_loader, model, device)
    assert abs(train_loss - math.log(50257)) < 1.0 and abs(val_loss - math.log(50257)) < 1.0  # the book: 10.99, 10.98
    with pytest.raises(RuntimeError, match="CPU"):
        calc_loss_batch(*next(iter(val_loader)), model, "cuda")


def test_listing_5_3_train_model_simple_and_plot_losses(capsys, tmp_path):
    train_loader, val_loader = book_loaders()
    device = "cpu"
    tokenizer = tiktoken.get_encoding("gpt2")
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.004, weight_decay=0.1)
    num_epochs = 1  # the book: 10, about 5 minutes on a laptop for the 124M model
    train_losses, val_losses, tokens_seen = train_model_simple(
        model, train_loader, val_loader, optimizer, device,
        num_epochs=num_epochs, eval_freq=5, eval_iter=1,
        start_context="Every effort moves you", tokenizer=tokenizer,
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("Ep 1 (Step 000000): Train loss ")
    assert sum(line.startswith("Every effort moves you") for line in printed) == num_epochs
    assert len(train_losses) == len(val_losses) == len(tokens_seen) == 2  # steps 0 and 5 of 9
    assert tokens_seen == [512, 3072]
    # It learns (PyTorch's init, the book's, starts this 32-wide model at a loss near 11 and
    # moves it more slowly in 5 steps than GPT-2's small weights did).
    assert train_losses[-1] < train_losses[0] - 0.1
    assert evaluate_model(model, train_loader, val_loader, device, eval_iter=1)[0] < train_losses[0] - 0.1

    epochs_tensor = torch.linspace(0, num_epochs, len(train_losses))
    figure = plot_losses(epochs_tensor, tokens_seen, train_losses, val_losses, path=tmp_path / "loss-plot.pdf")
    assert (tmp_path / "loss-plot.pdf").stat().st_size > 0 and len(figure.axes) == 2


def test_5_3_decoding_strategies():
    vocab = {"closer": 0, "every": 1, "effort": 2, "forward": 3, "inches": 4, "moves": 5, "pizza": 6, "toward": 7, "you": 8}
    inverse_vocab = {v: k for k, v in vocab.items()}
    next_token_logits = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])
    probas = torch.softmax(next_token_logits, dim=0)
    expected = np.exp(np.float64(next_token_logits.data)) / np.exp(np.float64(next_token_logits.data)).sum()
    np.testing.assert_allclose(probas.data, expected, rtol=1e-6)
    next_token_id = torch.argmax(probas).item()
    assert inverse_vocab[next_token_id] == "forward"

    torch.manual_seed(123)
    next_token_id = torch.multinomial(probas, num_samples=1).item()
    assert inverse_vocab[next_token_id] in vocab

    counts = print_sampled_tokens(probas, inverse_vocab)
    assert counts.sum() == 1000 and np.argmax(counts) == vocab["forward"]
    # Binomial noise: each count within 5 standard deviations of 1000 p (the book: 73, 582, 343 ...).
    assert (np.abs(counts - 1000 * expected) <= 5 * np.sqrt(1000 * expected * (1 - expected)) + 1).all()

    temperatures = [1, 0.1, 5]
    scaled_probas = [softmax_with_temperature(next_token_logits, T) for T in temperatures]
    np.testing.assert_allclose(scaled_probas[0].data, probas.data, rtol=1e-6)
    assert scaled_probas[1].data[vocab["forward"]] > 0.98  # the book samples it 985 times in 1000
    assert (scaled_probas[2].data > 0.03).all()  # every token gets a chance at T = 5

    top_k = 3
    top_logits, top_pos = torch.topk(next_token_logits, top_k)
    np.testing.assert_allclose(top_logits.data, [6.75, 6.28, 4.51], rtol=1e-6)
    assert top_pos.tolist() == [3, 7, 0]
    new_logits = torch.where(condition=next_token_logits < top_logits[-1], input=torch.tensor(float("-inf")), other=next_token_logits)
    assert np.isinf(new_logits.data).sum() == 6
    topk_probas = torch.softmax(new_logits, dim=0)
    np.testing.assert_allclose(topk_probas.data, [0.0615, 0, 0, 0.5775, 0, 0, 0, 0.3610, 0], atol=6e-5)


def test_5_3_3_generate_with_temperature_and_top_k():
    tokenizer = tiktoken.get_encoding("gpt2")
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG)
    model.eval()
    torch.manual_seed(123)
    token_ids = generate(model=model, idx=text_to_token_ids("Every effort moves you", tokenizer), max_new_tokens=15,
                         context_size=GPT_CONFIG["context_length"], top_k=25, temperature=1.4)
    assert token_ids.shape == (1, 19)
    assert token_ids_to_text(token_ids, tokenizer).startswith("Every effort moves you")


def test_5_4_saving_and_loading_model_and_optimizer(tmp_path):
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0004, weight_decay=0.1)
    calc_loss_batch(*next(iter(book_loaders()[1])), model, "cpu").backward()
    optimizer.step()
    torch.save(model.state_dict(), tmp_path / "model.pth")
    restored = GPTModel(GPT_CONFIG)
    restored.load_state_dict(torch.load(tmp_path / "model.pth", map_location="cpu", weights_only=True))
    restored.eval()
    for name, array in model.state_dict().items():
        np.testing.assert_array_equal(restored.state_dict()[name], array, err_msg=name)

    torch.save({"model_state_dict": model.state_dict(), "optimizer_state_dict": optimizer.state_dict()}, tmp_path / "model_and_optimizer.pth")
    checkpoint = torch.load(tmp_path / "model_and_optimizer.pth", weights_only=True)
    model = GPTModel(GPT_CONFIG)
    model.load_state_dict(checkpoint["model_state_dict"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.0005, weight_decay=0.1)
    optimizer.load_state_dict(checkpoint["optimizer_state_dict"])
    model.train()
    assert optimizer.state_dict()["state"].keys() == checkpoint["optimizer_state_dict"]["state"].keys()


def test_5_5_assign_and_loading_openai_layout_weights_the_books_way():
    """Listing 5.5's `load_weights_into_gpt`, typed as the book, on OpenAI-layout arrays made from a model."""
    config = {**GPT_CONFIG, "context_length": 16, "qkv_bias": True, "drop_rate": 0.0}
    torch.manual_seed(1)
    source = GPTModel(config)

    def linear(layer):  # OpenAI's Conv1D layout: w is (in, out)
        return {"w": layer.weight.data.T.copy(), "b": layer.bias.data.copy()}

    params = {"wte": source.tok_emb.weight.data.copy(), "wpe": source.pos_emb.weight.data.copy(),
              "g": source.final_norm.scale.data.copy(), "b": source.final_norm.shift.data.copy(), "blocks": []}
    for block in source.trf_blocks:
        att = block.att
        c_attn = {"w": np.concatenate([att.W_query.weight.data.T, att.W_key.weight.data.T, att.W_value.weight.data.T], axis=-1),
                  "b": np.concatenate([att.W_query.bias.data, att.W_key.bias.data, att.W_value.bias.data])}
        params["blocks"].append({
            "attn": {"c_attn": c_attn, "c_proj": linear(att.out_proj)},
            "mlp": {"c_fc": linear(block.ff.layers[0]), "c_proj": linear(block.ff.layers[2])},
            "ln_1": {"g": block.norm1.scale.data.copy(), "b": block.norm1.shift.data.copy()},
            "ln_2": {"g": block.norm2.scale.data.copy(), "b": block.norm2.shift.data.copy()},
        })

    def load_weights_into_gpt(gpt, params):
        gpt.pos_emb.weight = assign(gpt.pos_emb.weight, params["wpe"])
        gpt.tok_emb.weight = assign(gpt.tok_emb.weight, params["wte"])
        for b in range(len(params["blocks"])):
            q_w, k_w, v_w = np.split(params["blocks"][b]["attn"]["c_attn"]["w"], 3, axis=-1)
            gpt.trf_blocks[b].att.W_query.weight = assign(gpt.trf_blocks[b].att.W_query.weight, q_w.T)
            gpt.trf_blocks[b].att.W_key.weight = assign(gpt.trf_blocks[b].att.W_key.weight, k_w.T)
            gpt.trf_blocks[b].att.W_value.weight = assign(gpt.trf_blocks[b].att.W_value.weight, v_w.T)
            q_b, k_b, v_b = np.split(params["blocks"][b]["attn"]["c_attn"]["b"], 3, axis=-1)
            gpt.trf_blocks[b].att.W_query.bias = assign(gpt.trf_blocks[b].att.W_query.bias, q_b)
            gpt.trf_blocks[b].att.W_key.bias = assign(gpt.trf_blocks[b].att.W_key.bias, k_b)
            gpt.trf_blocks[b].att.W_value.bias = assign(gpt.trf_blocks[b].att.W_value.bias, v_b)
            gpt.trf_blocks[b].att.out_proj.weight = assign(gpt.trf_blocks[b].att.out_proj.weight, params["blocks"][b]["attn"]["c_proj"]["w"].T)
            gpt.trf_blocks[b].att.out_proj.bias = assign(gpt.trf_blocks[b].att.out_proj.bias, params["blocks"][b]["attn"]["c_proj"]["b"])
            gpt.trf_blocks[b].ff.layers[0].weight = assign(gpt.trf_blocks[b].ff.layers[0].weight, params["blocks"][b]["mlp"]["c_fc"]["w"].T)
            gpt.trf_blocks[b].ff.layers[0].bias = assign(gpt.trf_blocks[b].ff.layers[0].bias, params["blocks"][b]["mlp"]["c_fc"]["b"])
            gpt.trf_blocks[b].ff.layers[2].weight = assign(gpt.trf_blocks[b].ff.layers[2].weight, params["blocks"][b]["mlp"]["c_proj"]["w"].T)
            gpt.trf_blocks[b].ff.layers[2].bias = assign(gpt.trf_blocks[b].ff.layers[2].bias, params["blocks"][b]["mlp"]["c_proj"]["b"])
            gpt.trf_blocks[b].norm1.scale = assign(gpt.trf_blocks[b].norm1.scale, params["blocks"][b]["ln_1"]["g"])
            gpt.trf_blocks[b].norm1.shift = assign(gpt.trf_blocks[b].norm1.shift, params["blocks"][b]["ln_1"]["b"])
            gpt.trf_blocks[b].norm2.scale = assign(gpt.trf_blocks[b].norm2.scale, params["blocks"][b]["ln_2"]["g"])
            gpt.trf_blocks[b].norm2.shift = assign(gpt.trf_blocks[b].norm2.shift, params["blocks"][b]["ln_2"]["b"])
        gpt.final_norm.scale = assign(gpt.final_norm.scale, params["g"])
        gpt.final_norm.shift = assign(gpt.final_norm.shift, params["b"])
        gpt.out_head.weight = assign(gpt.out_head.weight, params["wte"])

    gpt = GPTModel(config)
    load_weights_into_gpt(gpt, params)
    gpt.to("cpu")
    gpt.eval()
    source.eval()
    ids = np.array([[6109, 3626, 6100, 345]])
    source.out_head.weight.data[...] = source.tok_emb.weight.data  # GPT-2 ties the head to wte
    np.testing.assert_allclose(gpt(ids).data, source(ids).data, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"Shape mismatch. Left: \(16, 32\), Right: \(3, 32\)"):
        assign(gpt.pos_emb.weight, params["wpe"][:3])
