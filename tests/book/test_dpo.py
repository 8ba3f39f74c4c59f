"""The chapter-7 DPO bonus notebook (dpo-from-scratch.ipynb), book style: its steps with minigpt's
names, checked against the values the notebook prints (data, prompt format, split sizes, the token
ids, padding and masks of its example batch, and the initial DPO loss and reward margins when the
policy equals the reference).

The notebook's model is the chapter-7 instruction-tuned GPT-2 medium; the initial loss depends
only on policy == reference, so a small GPT with GPT-2's vocabulary stands in for it here.
"""

import copy

import numpy as np

from minigpt.finetune.preference import (
    PreferenceDataset,
    compute_dpo_loss_batch,
    custom_collate_fn,
    evaluate_dpo_loss_loader,
    format_input,
    load_preference_data,
)
from minigpt.model import GPTModel
from minigpt.tokenizer import get_encoding

tokenizer = get_encoding("gpt2")
data = load_preference_data()


def test_the_data_and_its_split():
    assert len(data) == 1100  # "Number of entries: 1100"
    assert data[50] == {
        "instruction": "Identify the correct spelling of the following word.",
        "input": "Ocassion",
        "output": "The correct spelling is 'Occasion.'",
        "rejected": "The correct spelling is obviously 'Occasion.'",
        "chosen": "The correct spelling is 'Occasion.'",
    }
    assert data[999]["chosen"] == "A suitable antonym for 'complicated' would be 'simple'."
    assert format_input(data[50]) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nIdentify the correct spelling of the following word.\n\n### Input:\nOcassion"
    )
    train_portion = int(len(data) * 0.85)  # 85% for training
    test_portion = int(len(data) * 0.1)  # 10% for testing
    train_data = data[:train_portion]
    test_data = data[train_portion:train_portion + test_portion]
    val_data = data[train_portion + test_portion:]
    assert (len(train_data), len(val_data), len(test_data)) == (935, 55, 110)
    assert val_data[0]["instruction"] == "Convert the active sentence to passive: 'The chef cooks the meal every day.'"


def example_batch():
    example_dataset = PreferenceDataset(data[:2], tokenizer)
    items = [example_dataset[0], example_dataset[1]]
    return custom_collate_fn(items, mask_prompt_tokens=True, allowed_max_length=1024)


def test_the_example_batch_token_ids_and_masks():
    batch = example_batch()
    assert list(batch.keys()) == ["prompt", "chosen", "rejected", "chosen_mask", "rejected_mask"]
    assert batch["prompt"][0].tolist() == [
        21106, 318, 281, 12064, 326, 8477, 257, 4876, 13, 19430, 257, 2882, 326, 20431, 32543, 262,
        2581, 13, 198, 198, 21017, 46486, 25, 198, 36, 2100, 4985, 262, 1708, 9546, 416, 25449, 340,
        656, 262, 24993, 1813, 13, 198, 198, 21017, 23412, 25, 198, 19503, 521, 14610, 1545,
    ]
    assert batch["chosen"].shape == (2, 81)  # "chosen inputs: torch.Size([81])"
    assert batch["chosen"][0, 48:].tolist() == [
        198, 198, 21017, 18261, 25, 198, 464, 24993, 286, 262, 1813, 9546, 366, 19503, 521, 1, 318,
        11491, 11, 262, 3376, 24993, 318, 366, 6726, 1911, 50256, 50256, 50256, 50256, 50256, 50256, 50256,
    ]
    assert batch["chosen"][1, 45:60].tolist() == [198, 198, 21017, 18261, 25, 198, 1544, 2925, 284, 262, 3952, 790, 1110, 13, 50256]
    # chosen_mask[0]: 50 False (48 prompt tokens + 2 newlines), 24 True, 7 False (padding).
    assert batch["chosen_mask"][0].tolist() == [False] * 50 + [True] * 24 + [False] * 7
    assert tokenizer.decode(batch["chosen"][0][batch["chosen_mask"][0]].tolist()) == (
        "### Response:\nThe spelling of the given phrase \"freind\" is incorrect, the correct spelling is \"friend\"."
    )
    assert tokenizer.decode(batch["rejected"][0][batch["rejected_mask"][0]].tolist()) == (
        "### Response:\nThe spelling of the given phrase \"freind\" is flat out wrong, get it together, "
        "the correct spelling is \"friend\"."
    )


def test_the_initial_dpo_loss_is_ln2_with_zero_reward_margins():
    """'Training loss: 0.6931471824645996', 'Train reward margin: 0.0' (policy == reference)."""
    cfg = {"vocab_size": 50257, "context_length": 1024, "drop_rate": 0.0, "qkv_bias": True,
           "emb_dim": 16, "n_layers": 1, "n_heads": 2}
    policy_model = GPTModel(cfg, rng=123)
    reference_model = copy.deepcopy(policy_model)
    reference_model.eval()
    batch = example_batch()
    loss, chosen_rewards, rejected_rewards = compute_dpo_loss_batch(batch, policy_model, reference_model, beta=0.1)
    assert loss.item() == float(np.float32(np.log(2)))  # 0.6931471824645996, ln 2 in float32
    assert (chosen_rewards.item(), rejected_rewards.item()) == (0.0, 0.0)
    res = evaluate_dpo_loss_loader(policy_model, reference_model, [batch], [batch], beta=0.1, eval_iter=5)
    assert res["train_loss"] == res["val_loss"] == float(np.float32(np.log(2)))
    assert res["train_chosen_reward"] - res["train_rejected_reward"] == 0.0
    assert res["val_chosen_reward"] - res["val_rejected_reward"] == 0.0
