"""The book's teaching code: the small helpers and toy models its chapters define along the way.

These are not part of the training pipeline (that lives in nn/, model.py, data.py, train.py,
generate.py); they are the functions and classes a reader meets in a chapter to see one idea at
a time, kept here under the book's names so that a listing can import them instead of retyping
them. One section per chapter, in the book's order:

    chapter 3    softmax_naive                                   (3.3.1)
    chapter 4    DummyGPTModel, DummyTransformerBlock,          (4.1, listing 4.1)
                 DummyLayerNorm
                 ExampleDeepNeuralNetwork, print_gradients       (4.4, listing 4.5)
    chapter 5    softmax_with_temperature, print_sampled_tokens  (5.3.1)
                 assign                                          (5.5)
    appendix A   NeuralNetwork, ToyDataset, compute_accuracy     (A.5-A.7, listings A.3-A.8)
    appendix D   find_highest_gradient                           (D.3)

The chapter-3 attention classes are in `minigpt.nn.attention` and the chapter-4 layers in
`minigpt.nn`, because the GPT model is built from them.

References: Raschka, "Build a Large Language Model (From Scratch)", chapters 3-5 and appendices
A and D (code: rasbt/LLMs-from-scratch, Apache-2.0; rewritten here, not copied).
"""

from __future__ import annotations

import numpy as np

import autograd
from autograd import Tensor
from autograd.device import check_device
from minigpt import nn
from minigpt.data import Dataset

__all__ = [
    "softmax_naive",
    "DummyGPTModel",
    "DummyTransformerBlock",
    "DummyLayerNorm",
    "ExampleDeepNeuralNetwork",
    "print_gradients",
    "softmax_with_temperature",
    "print_sampled_tokens",
    "assign",
    "NeuralNetwork",
    "ToyDataset",
    "compute_accuracy",
    "find_highest_gradient",
]


# --------------------------------------------------------------------------------------------
# Chapter 3: attention
# --------------------------------------------------------------------------------------------


def softmax_naive(x: Tensor) -> Tensor:
    """exp(x) / sum(exp(x)) over dim 0, written out as the book's first softmax (section 3.3.1).

    NOTE: it overflows for large inputs (exp(1000) is inf); `autograd.softmax` subtracts the
    maximum first and is what every layer uses. On the chapter's small scores both agree.

    Args:
        x: float Tensor (N,) or (N, ...): normalised along dim 0.

    Returns:
        A Tensor of x's shape whose entries along dim 0 are positive and sum to 1.
    """
    exp_x = x.exp()
    return exp_x / exp_x.sum(dim=0)


# --------------------------------------------------------------------------------------------
# Chapter 4: the GPT's skeleton, and why shortcuts help
# --------------------------------------------------------------------------------------------


class DummyTransformerBlock(nn.Module):
    """A placeholder that returns its input (book listing 4.1): the slot of a TransformerBlock."""

    def __init__(self, cfg):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class DummyLayerNorm(nn.Module):
    """A placeholder that returns its input (book listing 4.1): the slot of a LayerNorm."""

    def __init__(self, normalized_shape, eps: float = 1e-5):
        super().__init__()

    def forward(self, x: Tensor) -> Tensor:
        return x


class DummyGPTModel(nn.Module):
    """The GPT's outline with placeholder blocks and norm (book listing 4.1, section 4.1).

    Embeddings, dropout, `n_layers` DummyTransformerBlocks, a DummyLayerNorm and the output
    head, with GPTModel's attribute names, so that the data flow (ids -> logits) can be run before
    the blocks exist.

    Args:
        cfg: the book's config dict (vocab_size, context_length, emb_dim, n_layers, drop_rate).

    Shapes: int ids (B, T) -> logits (B, T, vocab_size).
    """

    def __init__(self, cfg):
        super().__init__()
        self.tok_emb = nn.Embedding(cfg["vocab_size"], cfg["emb_dim"])
        self.pos_emb = nn.Embedding(cfg["context_length"], cfg["emb_dim"])
        self.drop_emb = nn.Dropout(cfg["drop_rate"])
        self.trf_blocks = nn.Sequential(*[DummyTransformerBlock(cfg) for _ in range(cfg["n_layers"])])
        self.final_norm = DummyLayerNorm(cfg["emb_dim"])
        self.out_head = nn.Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False)

    def forward(self, in_idx) -> Tensor:
        batch_size, seq_len = np.shape(in_idx)
        tok_embeds = self.tok_emb(in_idx)  # (B, T) -> (B, T, C)
        pos_embeds = self.pos_emb(np.arange(seq_len))  # (T, C)
        x = self.drop_emb(tok_embeds + pos_embeds)
        x = self.trf_blocks(x)
        x = self.final_norm(x)
        return self.out_head(x)  # (B, T, C) -> (B, T, V)


class ExampleDeepNeuralNetwork(nn.Module):
    """Five Linear + GELU layers, with or without shortcut connections (book listing 4.5, section 4.4).

    With `use_shortcut`, each layer whose output has its input's shape adds its input back
    (x = x + layer(x)), which keeps the gradients of the first layers from vanishing; see
    `print_gradients`.

    Args:
        layer_sizes: six sizes, input then the five layers' outputs (the book: [3, 3, 3, 3, 3, 1]).
        use_shortcut: add the shortcut connections.

    Attributes:
        layers: ModuleList of five Sequential(Linear, GELU), named `layers.0.0.weight`, ... as the book.

    Raises:
        ValueError: layer_sizes does not have six entries.
    """

    def __init__(self, layer_sizes, use_shortcut: bool):
        super().__init__()
        if len(layer_sizes) != 6:
            raise ValueError(f"ExampleDeepNeuralNetwork: layer_sizes must have 6 entries, got {len(layer_sizes)}")
        self.use_shortcut = use_shortcut
        self.layers = nn.ModuleList(
            [nn.Sequential(nn.Linear(size_in, size_out), nn.GELU()) for size_in, size_out in zip(layer_sizes, layer_sizes[1:])]
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            layer_output = layer(x)
            if self.use_shortcut and x.shape == layer_output.shape:
                x = x + layer_output  # the shortcut: the gradient flows through the "+" unchanged
            else:
                x = layer_output
        return x


def print_gradients(model: nn.Module, x) -> dict[str, float]:
    """Back-propagate an MSE loss against target 0 and print each weight's mean |gradient| (listing 4.5).

    Args:
        model: a module with one output (the book's ExampleDeepNeuralNetwork).
        x: its input, e.g. `torch.tensor([[1., 0., -1.]])`.

    Returns:
        {parameter name: mean absolute gradient} for every parameter whose name has "weight",
        in the printed order.

    NOTE: gradients accumulate, as in the book: call `model.zero_grad()` before calling it twice.
    """
    output = model(x)
    target = autograd.tensor([[0.0]], dtype=output.dtype)
    loss = nn.MSELoss()(output, target)
    loss.backward()
    means = {}
    for name, param in model.named_parameters():
        if "weight" in name:
            means[name] = float(np.abs(param.grad).mean())
            print(f"{name} has gradient mean of {means[name]}")
    return means


# --------------------------------------------------------------------------------------------
# Chapter 5: decoding strategies, loading weights
# --------------------------------------------------------------------------------------------


def softmax_with_temperature(logits: Tensor, temperature: float) -> Tensor:
    """softmax(logits / temperature) over dim 0 (section 5.3.1).

    Temperatures above 1 flatten the distribution, below 1 sharpen it.

    Args:
        logits: float Tensor (V,). temperature: > 0.

    Raises:
        ValueError: temperature <= 0 (use argmax for greedy decoding).
    """
    if not temperature > 0:
        raise ValueError(f"softmax_with_temperature: temperature must be > 0, got {temperature!r}")
    return autograd.softmax(logits / temperature, dim=0)


def print_sampled_tokens(probas: Tensor, inverse_vocab: dict, num_samples: int = 1_000, seed: int = 123) -> np.ndarray:
    """Draw `num_samples` tokens from `probas` and print how often each came (section 5.3.1).

    The book's version reads a global `inverse_vocab` and seeds torch with 123; here both are
    arguments. The draws come from the default generator, seeded by `autograd.manual_seed(seed)`
    first (NumPy's numbers, so the counts differ from the book's by sampling noise).

    Args:
        probas: float Tensor (V,) of probabilities.
        inverse_vocab: {token id: token string} for the V ids.
        num_samples: how many tokens to draw.
        seed: passed to `autograd.manual_seed` before drawing (None: do not re-seed).

    Returns:
        The counts, an int64 array (V,) that sums to num_samples.
    """
    if seed is not None:
        autograd.manual_seed(seed)
    sample = [autograd.multinomial(probas, num_samples=1).item() for _ in range(num_samples)]
    counts = np.bincount(sample, minlength=len(probas))
    for token_id, frequency in enumerate(counts):
        print(f"{frequency} x {inverse_vocab[token_id]}")
    return counts


def assign(left, right) -> nn.Parameter:
    """A new Parameter holding `right`, after checking it has `left`'s shape (section 5.5).

    The book's `load_weights_into_gpt` replaces each weight of its model by OpenAI's array this
    way (`gpt.pos_emb.weight = assign(gpt.pos_emb.weight, params["wpe"])`).
    `minigpt.pretrained.load_weights_into_gpt` copies in place instead, which keeps an
    optimizer's references valid.

    Args:
        left: the Parameter (or array) to be replaced. right: an array, Tensor or nested list.

    Returns:
        Parameter(right) (floating dtype kept; a copy of the values).

    Raises:
        ValueError: the shapes differ (both are named).
    """
    right_array = np.array(right.data if isinstance(right, Tensor) else right)
    if tuple(left.shape) != right_array.shape:
        raise ValueError(f"Shape mismatch. Left: {tuple(left.shape)}, Right: {right_array.shape}")
    return nn.Parameter(right_array)


# --------------------------------------------------------------------------------------------
# Appendix A: a multilayer perceptron, a toy dataset, accuracy
# --------------------------------------------------------------------------------------------


class NeuralNetwork(nn.Module):
    """A multilayer perceptron with two hidden layers of 30 and 20 units (appendix A, listing A.3).

    Args:
        num_inputs: input features. num_outputs: classes (logits).

    Attributes:
        layers: Sequential(Linear(num_inputs, 30), ReLU, Linear(30, 20), ReLU, Linear(20, num_outputs)).

    Shapes: (N, num_inputs) -> logits (N, num_outputs).
    """

    def __init__(self, num_inputs: int, num_outputs: int):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(num_inputs, 30),  # 1st hidden layer
            nn.ReLU(),
            nn.Linear(30, 20),  # 2nd hidden layer
            nn.ReLU(),
            nn.Linear(20, num_outputs),  # output layer
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


class ToyDataset(Dataset):
    """Rows of features with their labels (appendix A.6, listing A.5).

    Args:
        X: features (N, F), a Tensor or array. y: labels (N,).

    Returns from `dataset[i]`: (X[i], y[i]).
    """

    def __init__(self, X, y):
        self.features = X
        self.labels = y

    def __getitem__(self, index):
        return self.features[index], self.labels[index]

    def __len__(self) -> int:
        return self.labels.shape[0]


def compute_accuracy(model: nn.Module, dataloader, device=None) -> float:
    """The fraction of examples whose argmax logit is the label (appendix A.7, listing A.8).

    Args:
        model: logits (N, C) from features (N, F); it is put in eval mode, as the book does.
        dataloader: yields (features, labels) batches.
        device: the book's device argument of its GPU version ("cpu" or None).

    Returns:
        The accuracy in [0, 1], a float.

    Raises:
        RuntimeError: a device other than the CPU.
    """
    check_device(device, "compute_accuracy")
    model.eval()
    correct, total_examples = 0, 0
    for features, labels in dataloader:
        with autograd.no_grad():
            logits = model(features)
        predictions = np.argmax(logits.data, axis=1)
        labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
        correct += int((labels == predictions).sum())
        total_examples += len(labels)
    return correct / total_examples


# --------------------------------------------------------------------------------------------
# Appendix D: gradient clipping
# --------------------------------------------------------------------------------------------


def find_highest_gradient(model: nn.Module):
    """The largest gradient entry over all parameters, or None before any backward (appendix D.3).

    Used to see the effect of `nn.utils.clip_grad_norm_`: after clipping to max_norm 1.0 the
    largest entry shrinks.

    Returns:
        A 0-d float array (as the book's 0-d tensor), or None when no parameter has a gradient.
    """
    max_grad = None
    for param in model.parameters():
        if param.grad is not None:
            max_grad_param = np.asarray(param.grad).max()
            if max_grad is None or max_grad_param > max_grad:
                max_grad = max_grad_param
    return max_grad
