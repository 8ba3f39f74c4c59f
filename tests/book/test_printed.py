"""The book's printed tensors, compared as text: what a reader sees under a listing is what minigpt prints.

Each test types the book's code with only the imports changed and compares everything it prints
with the output stored in the book's notebooks (rasbt/LLMs-from-scratch: ch02.ipynb, ch03.ipynb,
appendix-A code-part1.ipynb; copied here as facts, so the suite needs no checkout of the book).

Some outputs come from PyTorch's random generator (`torch.manual_seed(123)` then `torch.rand`,
`nn.Embedding`, `nn.Dropout`...). They are tested against the book's text too, and skipped while
minigpt's default generator does not draw PyTorch's CPU stream: the feature is detected, not
assumed, by the first number PyTorch 2.13 draws after `manual_seed(123)` (`torch.rand(1)` is
0.29611194133758545 there).
"""

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest

import autograd as torch
import autograd.functional as F
from autograd.autograd import grad
from minigpt import nn
from minigpt import tokenizer as tiktoken
from minigpt.data import DataLoader, Dataset

VERDICT = Path(__file__).resolve().parents[2] / "minigpt" / "corpora" / "the-verdict.txt"


@pytest.fixture(autouse=True)
def default_print_options():
    torch.set_printoptions(profile="default")
    yield
    torch.set_printoptions(profile="default")


def printed(function) -> str:
    """Everything `function()` prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        function()
    return out.getvalue()


# ---- chapter 2 ------------------------------------------------------------------------------


class GPTDatasetV1(Dataset):  # the book's listing 2.5, as typed
    def __init__(self, txt, tokenizer, max_length, stride):
        self.input_ids = []
        self.target_ids = []
        token_ids = tokenizer.encode(txt, allowed_special={"<|endoftext|>"})
        for i in range(0, len(token_ids) - max_length, stride):
            input_chunk = token_ids[i:i + max_length]
            target_chunk = token_ids[i + 1: i + max_length + 1]
            self.input_ids.append(torch.tensor(input_chunk))
            self.target_ids.append(torch.tensor(target_chunk))

    def __len__(self):
        return len(self.input_ids)

    def __getitem__(self, idx):
        return self.input_ids[idx], self.target_ids[idx]


def create_dataloader_v1(txt, batch_size=4, max_length=256, stride=128, shuffle=True, drop_last=True, num_workers=0):
    tokenizer = tiktoken.get_encoding("gpt2")
    dataset = GPTDatasetV1(txt, tokenizer, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers)


def test_ch02_data_loader_batches_print_as_the_book():
    raw_text = VERDICT.read_text(encoding="utf-8")
    dataloader = create_dataloader_v1(raw_text, batch_size=1, max_length=4, stride=1, shuffle=False)
    data_iter = iter(dataloader)
    assert printed(lambda: print(next(data_iter))) == "[tensor([[  40,  367, 2885, 1464]]), tensor([[ 367, 2885, 1464, 1807]])]\n"
    assert printed(lambda: print(next(data_iter))) == "[tensor([[ 367, 2885, 1464, 1807]]), tensor([[2885, 1464, 1807, 3619]])]\n"
    dataloader = create_dataloader_v1(raw_text, batch_size=8, max_length=4, stride=4, shuffle=False)
    inputs, targets = next(iter(dataloader))
    assert printed(lambda: print("Inputs:\n", inputs)) == (
        "Inputs:\n"
        " tensor([[   40,   367,  2885,  1464],\n"
        "        [ 1807,  3619,   402,   271],\n"
        "        [10899,  2138,   257,  7026],\n"
        "        [15632,   438,  2016,   257],\n"
        "        [  922,  5891,  1576,   438],\n"
        "        [  568,   340,   373,   645],\n"
        "        [ 1049,  5975,   284,   502],\n"
        "        [  284,  3285,   326,    11]])\n"
    )
    assert printed(lambda: print(inputs.shape)) == "torch.Size([8, 4])\n"


def test_ch02_embedding_weights_print_as_the_book():
    input_ids = torch.tensor([2, 3, 5, 1])
    torch.manual_seed(123)
    embedding_layer = torch.nn.Embedding(6, 3)
    assert printed(lambda: print(embedding_layer.weight)) == (
        "Parameter containing:\n"
        "tensor([[ 0.3374, -0.1778, -0.1690],\n"
        "        [ 0.9178,  1.5810,  1.3010],\n"
        "        [ 1.2753, -0.2010, -0.1606],\n"
        "        [-0.4015,  0.9666, -1.1481],\n"
        "        [-1.1589,  0.3255, -0.6315],\n"
        "        [-2.8400, -0.7849, -1.4096]], requires_grad=True)\n"
    )
    assert printed(lambda: print(embedding_layer(torch.tensor([3])))) == (
        "tensor([[-0.4015,  0.9666, -1.1481]], grad_fn=<EmbeddingBackward0>)\n"
    )
    assert printed(lambda: print(embedding_layer(input_ids))).endswith("[ 0.9178,  1.5810,  1.3010]], grad_fn=<EmbeddingBackward0>)\n")


# ---- chapter 3 ------------------------------------------------------------------------------

INPUTS = [[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64], [0.22, 0.58, 0.33], [0.77, 0.25, 0.10], [0.05, 0.80, 0.55]]


def test_ch03_attention_scores_and_weights_print_as_the_book():
    inputs = torch.tensor(INPUTS)
    query = inputs[1]
    attn_scores_2 = torch.empty(inputs.shape[0])
    for i, x_i in enumerate(inputs):
        attn_scores_2[i] = torch.dot(x_i, query)
    assert printed(lambda: print(attn_scores_2)) == "tensor([0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])\n"
    assert printed(lambda: print(torch.dot(inputs[0], query))) == "tensor(0.9544)\n"
    attn_weights_2_tmp = attn_scores_2 / attn_scores_2.sum()
    assert printed(lambda: print("Attention weights:", attn_weights_2_tmp)) == (
        "Attention weights: tensor([0.1455, 0.2278, 0.2249, 0.1285, 0.1077, 0.1656])\n"
    )
    attn_weights_2 = torch.softmax(attn_scores_2, dim=0)
    assert printed(lambda: print("Attention weights:", attn_weights_2)) == (
        "Attention weights: tensor([0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581])\n"
    )
    attn_scores = inputs @ inputs.T
    assert printed(lambda: print(attn_scores)) == (
        "tensor([[0.9995, 0.9544, 0.9422, 0.4753, 0.4576, 0.6310],\n"
        "        [0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865],\n"
        "        [0.9422, 1.4754, 1.4570, 0.8296, 0.7154, 1.0605],\n"
        "        [0.4753, 0.8434, 0.8296, 0.4937, 0.3474, 0.6565],\n"
        "        [0.4576, 0.7070, 0.7154, 0.3474, 0.6654, 0.2935],\n"
        "        [0.6310, 1.0865, 1.0605, 0.6565, 0.2935, 0.9450]])\n"
    )
    attn_weights = torch.softmax(attn_scores, dim=-1)
    assert printed(lambda: print("All row sums:", attn_weights.sum(dim=-1))) == (
        "All row sums: tensor([1.0000, 1.0000, 1.0000, 1.0000, 1.0000, 1.0000])\n"
    )
    assert printed(lambda: print(attn_weights @ inputs)).startswith("tensor([[0.4421, 0.5931, 0.5790],\n        [0.4419, 0.6515, 0.5683],")
    mask_simple = torch.tril(torch.ones(6, 6))
    assert printed(lambda: print(mask_simple)).splitlines()[:2] == ["tensor([[1., 0., 0., 0., 0., 0.],", "        [1., 1., 0., 0., 0., 0.],"]
    batch = torch.stack((inputs, inputs), dim=0)
    assert printed(lambda: print(batch.shape)) == "torch.Size([2, 6, 3])\n"


def test_ch03_seeded_weights_and_dropout_print_as_the_book():
    inputs = torch.tensor(INPUTS)
    torch.manual_seed(123)
    W_query = torch.nn.Parameter(torch.rand(3, 2), requires_grad=False)
    assert printed(lambda: print(inputs[1] @ W_query)) == "tensor([0.4306, 1.4551])\n"
    torch.manual_seed(123)
    dropout = torch.nn.Dropout(0.5)
    assert printed(lambda: print(dropout(torch.ones(6, 6)))) == (
        "tensor([[2., 2., 0., 2., 2., 0.],\n"
        "        [0., 0., 0., 2., 0., 2.],\n"
        "        [2., 2., 2., 2., 0., 2.],\n"
        "        [0., 2., 2., 0., 0., 2.],\n"
        "        [0., 2., 0., 2., 0., 2.],\n"
        "        [0., 2., 2., 2., 2., 0.]])\n"
    )


# ---- appendix A -----------------------------------------------------------------------------


def test_appendix_a_tensors_dtypes_and_gradients_print_as_the_book():
    ary3d = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    tensor3d_3 = torch.from_numpy(ary3d)
    ary3d[0, 0, 0] = 999
    assert printed(lambda: print(tensor3d_3)) == "tensor([[[999,   2],\n         [  3,   4]],\n\n        [[  5,   6],\n         [  7,   8]]])\n"
    tensor1d = torch.tensor([1, 2, 3])
    assert printed(lambda: print(tensor1d.dtype)) == "torch.int64\n"
    assert printed(lambda: print(tensor1d.to(torch.float32).dtype)) == "torch.float32\n"
    assert printed(lambda: print(torch.tensor([[1, 2, 3], [4, 5, 6]]).shape)) == "torch.Size([2, 3])\n"
    y, x1 = torch.tensor([1.0]), torch.tensor([1.1])
    w1 = torch.tensor([2.2], requires_grad=True)
    b = torch.tensor([0.0], requires_grad=True)
    loss = F.binary_cross_entropy(torch.sigmoid(x1 * w1 + b), y)
    assert printed(lambda: print(grad(loss, w1, retain_graph=True))) == "(tensor([-0.0898]),)\n"
    loss.backward()
    assert printed(lambda: (print(w1.grad), print(b.grad))) == "tensor([-0.0898])\ntensor([-0.0817])\n"


class NeuralNetwork(torch.nn.Module):  # appendix A, listing A.4, as typed
    def __init__(self, num_inputs, num_outputs):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(num_inputs, 30),
            torch.nn.ReLU(),
            torch.nn.Linear(30, 20),
            torch.nn.ReLU(),
            torch.nn.Linear(20, num_outputs),
        )

    def forward(self, x):
        return self.layers(x)


def test_appendix_a_model_prints_as_the_book():
    model = NeuralNetwork(50, 3)
    assert printed(lambda: print(model)) == (
        "NeuralNetwork(\n"
        "  (layers): Sequential(\n"
        "    (0): Linear(in_features=50, out_features=30, bias=True)\n"
        "    (1): ReLU()\n"
        "    (2): Linear(in_features=30, out_features=20, bias=True)\n"
        "    (3): ReLU()\n"
        "    (4): Linear(in_features=20, out_features=3, bias=True)\n"
        "  )\n"
        ")\n"
    )
    assert printed(lambda: print(model.layers[0].weight.shape)) == "torch.Size([30, 50])\n"


def test_appendix_a_seeded_model_output_prints_as_the_book():
    torch.manual_seed(123)
    model = NeuralNetwork(50, 3)
    torch.manual_seed(123)
    X = torch.rand((1, 50))
    assert printed(lambda: print(model(X))) == "tensor([[-0.1262,  0.1080, -0.1792]], grad_fn=<AddmmBackward0>)\n"
    with torch.no_grad():
        assert printed(lambda: print(torch.softmax(model(X), dim=1))) == "tensor([[0.3113, 0.3934, 0.2952]])\n"


def test_a_cell_that_prints_a_summarised_weight_keeps_the_books_layout():
    """The layout of appendix A's `print(model.layers[0].weight)` (30 x 50 > 1,000 elements): three
    rows and columns at each end, `...` between, `requires_grad=True` on a line of its own."""
    weight = torch.nn.Parameter(np.linspace(-0.14, 0.14, 1500, dtype=np.float32).reshape(30, 50))
    lines = printed(lambda: print(weight)).splitlines()
    assert lines[0] == "Parameter containing:" and lines[4] == "        ...,"
    assert lines[1].startswith("tensor([[-0.1400, -0.1398, -0.1396,  ...,") and lines[-1] == "       requires_grad=True)"
    assert len(lines) == 9
