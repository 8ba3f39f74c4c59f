"""Appendix A, "Introduction to PyTorch", run in the book's style on minigpt.

Exact: tensor creation and dtypes, the matrix products, the logistic-regression example's loss
(0.0852) and its gradients (-0.0898, -0.0817) by `autograd.grad` and by `backward`, the
perceptron's parameter count (2,213), the toy data loaders' batches. The training run of A.7
starts from NumPy's draws, so it is checked by its outcome: the loss falls to about 0 and the
accuracy on both sets is 1.0, as in the book.
"""

import numpy as np
import pytest

import autograd as torch
import autograd.functional as F
from minigpt import nn  # noqa: F401 - the book's import line; it also adds torch.nn and torch.optim
from minigpt.data import DataLoader, Dataset
from minigpt.teaching import NeuralNetwork, ToyDataset, compute_accuracy


def test_a_2_tensors():
    tensor0d = torch.tensor(1)
    tensor1d = torch.tensor([1, 2, 3])
    tensor2d = torch.tensor([[1, 2], [3, 4]])
    tensor3d_1 = torch.tensor([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    assert tensor0d.shape == () and tensor3d_1.shape == (2, 2, 2) and tensor2d.tolist() == [[1, 2], [3, 4]]
    ary3d = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])
    tensor3d_2 = torch.tensor(ary3d)  # copies
    tensor3d_3 = torch.from_numpy(ary3d)  # shares memory
    ary3d[0, 0, 0] = 999
    assert tensor3d_2[0, 0, 0].item() == 1 and tensor3d_3[0, 0, 0].item() == 999

    assert tensor1d.dtype == torch.int64
    floatvec = torch.tensor([1.0, 2.0, 3.0])
    assert floatvec.dtype == torch.float32
    assert tensor1d.to(torch.float32).dtype == torch.float32

    tensor2d = torch.tensor([[1, 2, 3], [4, 5, 6]])
    assert tensor2d.shape == (2, 3)
    assert tensor2d.reshape(3, 2).tolist() == tensor2d.view(3, 2).tolist() == [[1, 2], [3, 4], [5, 6]]
    assert tensor2d.T.tolist() == [[1, 4], [2, 5], [3, 6]]
    assert tensor2d.matmul(tensor2d.T).tolist() == (tensor2d @ tensor2d.T).tolist() == [[14, 32], [32, 77]]


def test_a_3_and_a_4_logistic_regression_and_its_gradients():
    y = torch.tensor([1.0])
    x1 = torch.tensor([1.1])
    w1 = torch.tensor([2.2], requires_grad=True)
    b = torch.tensor([0.0], requires_grad=True)
    z = x1 * w1 + b
    a = torch.sigmoid(z)
    loss = F.binary_cross_entropy(a, y)
    assert loss.item() == pytest.approx(0.0852, abs=5e-5)

    grad_L_w1 = torch.autograd.grad(loss, w1, retain_graph=True)
    grad_L_b = torch.autograd.grad(loss, b, retain_graph=True)
    np.testing.assert_allclose(grad_L_w1[0].data, [-0.0898], atol=5e-5)
    np.testing.assert_allclose(grad_L_b[0].data, [-0.0817], atol=5e-5)
    loss.backward()
    np.testing.assert_allclose(w1.grad, grad_L_w1[0].data, rtol=1e-6)
    np.testing.assert_allclose(b.grad, grad_L_b[0].data, rtol=1e-6)
    # dL/db = sigmoid(z) - y and dL/dw1 = x1 (sigmoid(z) - y): the closed form.
    assert b.grad[0] == pytest.approx(1 / (1 + np.exp(-2.42)) - 1, rel=1e-5)


def test_a_5_multilayer_perceptron():
    model = NeuralNetwork(50, 3)
    assert repr(model).splitlines()[:4] == [
        "NeuralNetwork(",
        "  (layers): Sequential(",
        "    (0): Linear(in_features=50, out_features=30, bias=True)",
        "    (1): ReLU()",
    ]
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert num_params == 2213
    assert model.layers[0].weight.shape == (30, 50)
    bound = 1 / np.sqrt(50)  # PyTorch's default init, U(-1/sqrt(in), 1/sqrt(in))
    assert np.abs(model.layers[0].weight.data).max() <= bound and model.layers[0].weight.data.std() > 0.5 * bound / np.sqrt(3)

    torch.manual_seed(123)
    model = NeuralNetwork(50, 3)
    first = model.layers[0].weight.data.copy()
    torch.manual_seed(123)
    assert np.array_equal(NeuralNetwork(50, 3).layers[0].weight.data, first)  # reproducible, as the book shows

    torch.manual_seed(123)
    X = torch.rand((1, 50))
    out = model(X)
    assert out.shape == (1, 3) and out.requires_grad
    with torch.no_grad():
        out = model(X)
    assert not out.requires_grad
    with torch.no_grad():
        out = torch.softmax(model(X), dim=1)
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6)


X_train = torch.tensor([[-1.2, 3.1], [-0.9, 2.9], [-0.5, 2.6], [2.3, -1.1], [2.7, -1.5]])
y_train = torch.tensor([0, 0, 0, 1, 1])
X_test = torch.tensor([[-0.8, 2.8], [2.6, -1.6]])
y_test = torch.tensor([0, 1])


class BookToyDataset(Dataset):
    """Listing A.5 typed as the book (minigpt.teaching.ToyDataset is the same class)."""

    def __init__(self, X, y):
        self.features = X
        self.labels = y

    def __getitem__(self, index):
        return self.features[index], self.labels[index]

    def __len__(self):
        return self.labels.shape[0]


@pytest.mark.parametrize("dataset_class", [BookToyDataset, ToyDataset])
def test_a_6_data_loaders(dataset_class):
    train_ds = dataset_class(X_train, y_train)
    assert len(train_ds) == 5
    torch.manual_seed(123)
    train_loader = DataLoader(dataset=train_ds, batch_size=2, shuffle=True, num_workers=0)
    batches = list(train_loader)
    assert [len(y) for x, y in batches] == [2, 2, 1]
    for x, y in batches:  # tensors in, tensors out: the features and labels stay paired
        assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and y.dtype == torch.int64
        for row, label in zip(x.tolist(), y.tolist()):
            assert (row[0] > 0) == (label == 1)
    seen = sorted(row for x, _ in batches for row in x.tolist())
    assert seen == sorted(X_train.tolist())

    train_loader = DataLoader(dataset=train_ds, batch_size=2, shuffle=True, num_workers=0, drop_last=True)
    assert [len(y) for x, y in train_loader] == [2, 2]
    test_loader = DataLoader(dataset=dataset_class(X_test, y_test), batch_size=2, shuffle=False, num_workers=0)
    ((x, y),) = list(test_loader)
    assert x.tolist() == X_test.tolist() and y.tolist() == [0, 1]


def test_a_7_training_loop_and_a_8_accuracy(tmp_path, capsys):
    torch.manual_seed(123)
    train_loader = DataLoader(dataset=ToyDataset(X_train, y_train), batch_size=2, shuffle=True, num_workers=0, drop_last=True)
    test_loader = DataLoader(dataset=ToyDataset(X_test, y_test), batch_size=2, shuffle=False, num_workers=0)
    torch.manual_seed(123)
    model = NeuralNetwork(num_inputs=2, num_outputs=2)
    device = torch.device("cpu")
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    num_epochs = 3
    losses = []
    for epoch in range(num_epochs):
        model.train()
        for batch_idx, (features, labels) in enumerate(train_loader):
            features, labels = features.to(device), labels.to(device)
            logits = model(features)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            print(f"Epoch: {epoch+1:03d}/{num_epochs:03d}"
                  f" | Batch {batch_idx+1:03d}/{len(train_loader):03d}"
                  f" | Train/Val Loss: {loss:.2f}")
            losses.append(loss.item())
        model.eval()
    assert capsys.readouterr().out.splitlines()[0].startswith("Epoch: 001/003 | Batch 001/002 | Train/Val Loss: ")
    assert losses[-1] < 0.1 < losses[0]  # the book: 0.75 ... 0.00

    model.eval()
    with torch.no_grad():
        outputs = model(X_train)
    torch.set_printoptions(sci_mode=False)
    probas = torch.softmax(outputs, dim=1)
    predictions = torch.argmax(probas, dim=1)
    assert predictions.tolist() == [0, 0, 0, 1, 1] == torch.argmax(outputs, dim=1).tolist()
    assert (predictions == y_train).tolist() == [True] * 5
    assert torch.sum(predictions == y_train).item() == 5
    assert compute_accuracy(model, train_loader) == 1.0
    assert compute_accuracy(model, test_loader, device=device) == 1.0

    torch.save(model.state_dict(), tmp_path / "model.pth")
    model = NeuralNetwork(2, 2)
    result = model.load_state_dict(torch.load(tmp_path / "model.pth", weights_only=True))
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert compute_accuracy(model, test_loader) == 1.0


def test_a_9_devices():
    tensor_1 = torch.tensor([1.0, 2.0, 3.0])
    tensor_2 = torch.tensor([4.0, 5.0, 6.0])
    assert (tensor_1 + tensor_2).tolist() == [5.0, 7.0, 9.0]
    assert tensor_1.to("cpu").device == torch.device("cpu")
    model = NeuralNetwork(2, 2)
    assert model.to("cpu") is model
    with pytest.raises(RuntimeError, match="CPU"):
        model.to("cuda")
    with pytest.raises(RuntimeError, match="CPU"):
        tensor_1.to("cuda")
