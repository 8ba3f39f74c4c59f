"""Appendix E (LoRA), book style: the notebook's steps with minigpt's names, checked against the
values the book prints.

appendix-E.ipynb loads GPT-2 small, swaps in a 2-class head (`torch.nn.Linear(768, 2)`), freezes
every parameter, and wraps every Linear with `replace_linear_with_lora(model, rank=16, alpha=16)`:
"Total trainable parameters before: 124,441,346", "after: 0", "Total trainable LoRA parameters:
2,666,528". Chapter 7's exercise 7.4 does the same to GPT-2 medium with its language-model head:
406,286,336 before and 7,898,384 LoRA parameters (exercise-solutions.ipynb).

The counts depend only on the shapes, so the models are built from the book's configs under
`skip_init()` (no random draws; the weights would be loaded from a checkpoint right after).
"""

import numpy as np
import pytest

from minigpt.model import GPTModel
from minigpt.nn import Linear, LinearWithLoRA, replace_linear_with_lora, skip_init

BASE_CONFIG = {
    "vocab_size": 50257,     # Vocabulary size
    "context_length": 1024,  # Context length
    "drop_rate": 0.0,        # Dropout rate
    "qkv_bias": True,        # Query-key-value bias
}

model_configs = {
    "gpt2-small (124M)": {"emb_dim": 768, "n_layers": 12, "n_heads": 12},
    "gpt2-medium (355M)": {"emb_dim": 1024, "n_layers": 24, "n_heads": 16},
}


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "choose_model, num_classes, before, lora",
    [
        ("gpt2-small (124M)", 2, 124_441_346, 2_666_528),  # appendix E.5
        ("gpt2-medium (355M)", None, 406_286_336, 7_898_384),  # chapter 7, exercise 7.4
    ],
)
def test_trainable_parameter_counts_are_the_books(choose_model, num_classes, before, lora):
    with skip_init():
        model = GPTModel({**BASE_CONFIG, **model_configs[choose_model]})
        if num_classes is not None:  # chapter 6's classification head
            model.out_head = Linear(in_features=model_configs[choose_model]["emb_dim"], out_features=num_classes)
    assert trainable(model) == before

    for param in model.parameters():
        param.requires_grad = False
    assert trainable(model) == 0

    replace_linear_with_lora(model, rank=16, alpha=16)
    assert trainable(model) == lora
    # Every Linear is wrapped: 6 per block (4 attention, 2 feed-forward) and the head.
    wrapped = [module for module in model.modules() if isinstance(module, LinearWithLoRA)]
    assert len(wrapped) == 6 * model_configs[choose_model]["n_layers"] + 1
    assert isinstance(model.out_head, LinearWithLoRA)


def test_wrapping_leaves_the_untrained_classifier_unchanged():
    """The notebook's accuracies are the same before and after wrapping (46.25 / 45.00 / 48.75 %):
    with B = 0 the wrapped model computes exactly the same logits."""
    cfg = {**BASE_CONFIG, "context_length": 16, "emb_dim": 32, "n_layers": 2, "n_heads": 2}
    model = GPTModel(cfg, rng=123)
    model.out_head = Linear(in_features=32, out_features=2, rng=123)
    model.eval()
    ids = np.random.default_rng(0).integers(0, 50257, (4, 16))
    before = model(ids).data[:, -1, :].copy()
    for param in model.parameters():
        param.requires_grad = False
    replace_linear_with_lora(model, rank=16, alpha=16, rng=123)
    np.testing.assert_array_equal(model(ids).data[:, -1, :], before)
