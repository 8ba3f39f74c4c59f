"""Chapter 4, "Implementing a GPT model from scratch to generate text", in the book's style on minigpt.

Deterministic numbers are checked exactly: the token ids of the two example texts, the parameter
counts (163,009,536 and 124,412,160 with weight tying), the model's size in MB, the prompt's ids.
The random-weight demos are checked in kind: the normalised activations have mean 0 and variance
1, and without shortcut connections the first layers' gradients vanish (100x smaller than the
last layer's) while with them they do not. GPT_CONFIG_124M is built without drawing its 163M
weights (`nn.skip_init`) to count them; the forward passes use a small config, so this file runs
in seconds.
"""

import contextlib
import io

import numpy as np

import autograd as torch
from minigpt import nn
from minigpt import tokenizer as tiktoken
from minigpt.generate import generate_text_simple
from minigpt.model import GPT_CONFIG_124M, GPTModel
from minigpt.teaching import DummyGPTModel, ExampleDeepNeuralNetwork, print_gradients

SMALL_CONFIG = {**GPT_CONFIG_124M, "context_length": 16, "emb_dim": 48, "n_heads": 4, "n_layers": 2}


def example_batch():
    tokenizer = tiktoken.get_encoding("gpt2")
    batch = []
    batch.append(torch.tensor(tokenizer.encode("Every effort moves you")))
    batch.append(torch.tensor(tokenizer.encode("Every day holds a")))
    return torch.stack(batch, dim=0)


def test_4_1_dummy_gpt_model():
    batch = example_batch()
    assert batch.tolist() == [[6109, 3626, 6100, 345], [6109, 1110, 6622, 257]]
    torch.manual_seed(123)
    model = DummyGPTModel({**GPT_CONFIG_124M, "emb_dim": 32})  # the book's 768 works too, slower
    logits = model(batch)
    assert logits.shape == (2, 4, 50257)


def test_4_2_layer_normalization():
    torch.manual_seed(123)
    batch_example = torch.randn(2, 5)
    layer = nn.Sequential(nn.Linear(5, 6), nn.ReLU())
    out = layer(batch_example)
    assert out.shape == (2, 6) and (out.data >= 0).all()
    mean = out.mean(dim=-1, keepdim=True)
    var = out.var(dim=-1, keepdim=True)
    out_norm = (out - mean) / torch.sqrt(var)
    torch.set_printoptions(sci_mode=False)
    np.testing.assert_allclose(out_norm.mean(dim=-1, keepdim=True).data, 0, atol=1e-6)
    np.testing.assert_allclose(out_norm.var(dim=-1, keepdim=True).data, 1, atol=1e-5)

    ln = nn.LayerNorm(emb_dim=6)
    out_ln = ln(out)
    np.testing.assert_allclose(out_ln.mean(dim=-1, keepdim=True).data, 0, atol=1e-6)
    # Biased variance of the normalised rows: just under 1 because of eps (the book: 0.9995, 0.9997).
    var = out_ln.var(dim=-1, unbiased=False, keepdim=True).data
    assert ((0.99 < var) & (var <= 1.0)).all()


class GELU(nn.Module):
    """Section 4.3's GELU as the book types it, from primitive ops."""

    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(torch.sqrt(torch.tensor(2.0 / torch.pi)) * (x + 0.044715 * torch.pow(x, 3))))


def test_4_3_gelu_and_feed_forward():
    gelu, relu = GELU(), nn.ReLU()
    x = torch.linspace(-3, 3, 100)
    y_gelu, y_relu = gelu(x), relu(x)
    np.testing.assert_allclose(y_gelu.data, nn.GELU()(x).data, atol=1e-6)  # minigpt's fused GELU
    np.testing.assert_array_equal(y_relu.data, np.maximum(x.data, 0))
    assert y_gelu.data.min() < 0  # GELU lets small negative values through, ReLU does not

    ffn = nn.FeedForward(GPT_CONFIG_124M)
    x = torch.rand(2, 3, 768)
    assert ffn(x).shape == (2, 3, 768)


def test_listing_4_5_shortcut_connections_keep_gradients_alive(capsys):
    layer_sizes = [3, 3, 3, 3, 3, 1]
    sample_input = torch.tensor([[1.0, 0.0, -1.0]])
    torch.manual_seed(123)
    model_without_shortcut = ExampleDeepNeuralNetwork(layer_sizes, use_shortcut=False)
    without = print_gradients(model_without_shortcut, sample_input)
    torch.manual_seed(123)
    model_with_shortcut = ExampleDeepNeuralNetwork(layer_sizes, use_shortcut=True)
    with_shortcut = print_gradients(model_with_shortcut, sample_input)

    names = [f"layers.{i}.0.weight" for i in range(5)]
    assert list(without) == list(with_shortcut) == names
    assert capsys.readouterr().out.startswith("layers.0.0.weight has gradient mean of ")
    # The book (PyTorch's draws): 0.0002 for the first layer without shortcuts against 0.005 for
    # the last, and 0.22 with them. With NumPy's draws for seed 123: 0.00005 against 0.006, and
    # 0.006 with shortcuts; the typical case over 20 seeds is checked below.
    assert without["layers.0.0.weight"] < 0.1 * without["layers.4.0.weight"]
    assert with_shortcut["layers.0.0.weight"] > 10 * without["layers.0.0.weight"]
    first_over_last, with_over_without = [], []
    for seed in range(20):
        with contextlib.redirect_stdout(io.StringIO()):
            torch.manual_seed(seed)
            plain = print_gradients(ExampleDeepNeuralNetwork(layer_sizes, use_shortcut=False), sample_input)
            torch.manual_seed(seed)
            shortcut = print_gradients(ExampleDeepNeuralNetwork(layer_sizes, use_shortcut=True), sample_input)
        first_over_last.append(plain["layers.0.0.weight"] / plain["layers.4.0.weight"])
        with_over_without.append(shortcut["layers.0.0.weight"] / plain["layers.0.0.weight"])
    assert np.median(first_over_last) < 0.05  # vanishing: about 0.01 over these seeds
    assert np.median(with_over_without) > 20  # shortcuts: about 70x larger first-layer gradients
    # The book's own line, `param.grad.abs().mean().item()`, works on minigpt's gradients.
    weight = model_with_shortcut.layers[0][0].weight
    assert weight.grad.abs().mean().item() == with_shortcut["layers.0.0.weight"]


def test_4_5_transformer_block():
    torch.manual_seed(123)
    x = torch.rand(2, 4, 768)
    block = nn.TransformerBlock(GPT_CONFIG_124M)
    output = block(x)
    assert x.shape == output.shape == (2, 4, 768)


def test_4_6_parameter_counts_and_size():
    with nn.skip_init():  # the count needs the shapes, not 163M random numbers
        model = GPTModel(GPT_CONFIG_124M)
    total_params = sum(p.numel() for p in model.parameters())
    assert f"{total_params:,}" == "163,009,536"
    assert model.tok_emb.weight.shape == (50257, 768) and model.out_head.weight.shape == (50257, 768)
    total_params_gpt2 = total_params - sum(p.numel() for p in model.out_head.parameters())
    assert f"{total_params_gpt2:,}" == "124,412,160"
    total_size_mb = total_params * 4 / (1024 * 1024)
    assert f"{total_size_mb:.2f} MB" == "621.83 MB"


def test_4_6_and_4_7_model_output_and_greedy_generation():
    torch.manual_seed(123)
    model = GPTModel(SMALL_CONFIG)
    out = model(example_batch())
    assert out.shape == (2, 4, 50257)

    tokenizer = tiktoken.get_encoding("gpt2")
    encoded = tokenizer.encode("Hello, I am")
    assert encoded == [15496, 11, 314, 716]
    encoded_tensor = torch.tensor(encoded).unsqueeze(0)
    assert encoded_tensor.shape == (1, 4)
    model.eval()
    out = generate_text_simple(model=model, idx=encoded_tensor, max_new_tokens=6, context_size=SMALL_CONFIG["context_length"])
    assert len(out[0]) == 10 and out[0][:4].tolist() == encoded
    decoded_text = tokenizer.decode(out.squeeze(0).tolist())
    assert decoded_text.startswith("Hello, I am")
    # Greedy decoding is deterministic: the same model continues the same way.
    again = generate_text_simple(model=model, idx=encoded_tensor, max_new_tokens=6, context_size=SMALL_CONFIG["context_length"])
    assert np.array_equal(np.asarray(out), np.asarray(again))


class LayerNorm(nn.Module):
    """Listing 4.2 as the book types it."""

    def __init__(self, emb_dim):
        super().__init__()
        self.eps = 1e-5
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        norm_x = (x - mean) / torch.sqrt(var + self.eps)
        return self.scale * norm_x + self.shift


class FeedForward(nn.Module):
    """Listing 4.4 as the book types it."""

    def __init__(self, cfg):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(cfg["emb_dim"], 4 * cfg["emb_dim"]), GELU(), nn.Linear(4 * cfg["emb_dim"], cfg["emb_dim"]))

    def forward(self, x):
        return self.layers(x)


class TransformerBlock(nn.Module):
    """Listing 4.6 as the book types it, over the book's MultiHeadAttention (listing 3.5)."""

    def __init__(self, cfg):
        super().__init__()
        from tests.book.test_ch03 import MultiHeadAttention

        self.att = MultiHeadAttention(d_in=cfg["emb_dim"], d_out=cfg["emb_dim"], context_length=cfg["context_length"],
                                      num_heads=cfg["n_heads"], dropout=cfg["drop_rate"], qkv_bias=cfg["qkv_bias"])
        self.ff = FeedForward(cfg)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = nn.Dropout(cfg["drop_rate"])

    def forward(self, x):
        shortcut = x
        x = self.drop_shortcut(self.att(self.norm1(x)))
        x = x + shortcut
        shortcut = x
        x = self.drop_shortcut(self.ff(self.norm2(x)))
        return x + shortcut


class BookGPTModel(nn.Module):
    """Listing 4.7 as the book types it (named GPTModel in the book)."""

    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[TransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = LayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx):
        batch_size, seq_len = in_idx.shape
        tok_embeds = self.tok_emb(in_idx)
        pos_embeds = self.pos_emb(torch.arange(seq_len, device=in_idx.device))
        x = tok_embeds + pos_embeds
        x = self.drop_emb(x)
        x = self.trf_blocks(x)
        x = self.final_norm(x)
        return self.out_head(x)


def test_listings_4_2_to_4_7_typed_as_the_book_equal_minigpts_gpt_model():
    config = {**SMALL_CONFIG, "drop_rate": 0.0}
    torch.manual_seed(123)
    book_model = BookGPTModel(config)
    book_model.eval()
    batch = example_batch()
    logits = book_model(batch)
    assert logits.shape == (2, 4, 50257)
    # The book's state dict (with its mask buffers) loads into minigpt's GPTModel, which computes the same.
    model = GPTModel(config)
    model.load_state_dict(book_model.state_dict())
    model.eval()
    np.testing.assert_allclose(model(batch).data, logits.data, rtol=1e-4, atol=1e-5)
    logits.sum().backward()  # and the book's model trains: every parameter gets a gradient
    assert all(p.grad is not None for p in book_model.parameters())


def test_section_4_7_untrained_124m_model_generates_the_books_token_ids():
    """ch04.ipynb, section 4.7: `torch.manual_seed(123); model = GPTModel(GPT_CONFIG_124M)`, then
    `generate_text_simple` on "Hello, I am" prints these ids: the same weights as the book's
    PyTorch model (PyTorch's streams, formulas and order), so the same greedy tokens."""
    torch.manual_seed(123)
    model = GPTModel(GPT_CONFIG_124M)
    model.eval()
    encoded = tiktoken.get_encoding("gpt2").encode("Hello, I am")
    assert encoded == [15496, 11, 314, 716]
    out = generate_text_simple(model=model, idx=torch.tensor(encoded).unsqueeze(0), max_new_tokens=6,
                               context_size=GPT_CONFIG_124M["context_length"])
    assert out.tolist() == [[15496, 11, 314, 716, 27018, 24086, 47843, 30961, 42348, 7267]]
