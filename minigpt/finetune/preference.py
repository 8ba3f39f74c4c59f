"""Preference tuning with direct preference optimisation (DPO): the book's chapter-7 bonus notebook.

An instruction-tuned model (the policy) is trained to raise the probability of a preferred
response over a dispreferred one, relative to a frozen copy of itself (the reference):

    loss = -log sigmoid(beta * ((log pi(y_c|x) - log pi(y_r|x)) - (log ref(y_c|x) - log ref(y_r|x))))

with no reward model and no sampling. What this file adds, under the names of the book's notebook
(dpo-from-scratch.ipynb, sections 2-4): the data (`load_preference_data`, `PreferenceDataset`,
`custom_collate_fn` with masks over the response tokens), the log-probability of a response
(`compute_logprobs`), the loss (`compute_dpo_loss`, `compute_dpo_loss_batch`,
`compute_dpo_loss_loader`, `evaluate_dpo_loss_loader`) and the training loop
(`train_model_dpo_simple`). The gradients are the engine's: `compute_logprobs` is a fused
cross-entropy per token, and the log-sigmoid is the engine's fused, stable `F.logsigmoid`.

Shape letters: B batch, T tokens, V vocabulary.

References: Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is
Secretly a Reward Model", eq. 7 (the loss) and section 5 (the implicit reward
beta * log pi / ref); Raschka, "Build a Large Language Model (From Scratch)", ch. 7 bonus,
ch07/04_preference-tuning-with-dpo/dpo-from-scratch.ipynb.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from autograd import Tensor, no_grad
from autograd import functional as F
from minigpt.finetune.instruction import format_input  # the book's chapter-7 prompt, re-exported for the notebook's calls
from minigpt.train import generate_and_print_sample

__all__ = [
    "DATA_PATH",
    "load_preference_data",
    "PreferenceDataset",
    "custom_collate_fn",
    "compute_logprobs",
    "compute_dpo_loss",
    "compute_dpo_loss_batch",
    "compute_dpo_loss_loader",
    "evaluate_dpo_loss_loader",
    "train_model_dpo_simple",
]

# The book's 1,100 entries with "chosen" and "rejected" responses (rasbt/LLMs-from-scratch,
# Apache-2.0; see minigpt/corpora/README.md).
DATA_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "corpora", "instruction-data-with-preference.json")

_REQUIRED_KEYS = ("instruction", "input", "chosen", "rejected")




def load_preference_data(path: str | os.PathLike | None = None) -> list[dict]:
    """Read the preference data: a JSON list of dicts with "instruction", "input", "chosen", "rejected".

    Args:
        path: a JSON file; None reads the bundled book data (1,100 entries).

    Returns:
        The list of entries (an "output" key, the chapter-7 answer, may also be present).

    Raises:
        ValueError: the file is not a JSON list, or an entry lacks a required key or has a
            non-string value (naming the entry's index and the key).
    """
    path = DATA_PATH if path is None else os.fspath(path)
    with open(path, encoding="utf-8") as file:
        data = json.load(file)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
    for index, entry in enumerate(data):
        _check_entry(entry, index)
    return data


def _check_entry(entry, index: int) -> None:
    if not isinstance(entry, dict):
        raise ValueError(f"preference data: entry {index} must be a dict, got {type(entry).__name__}")
    for key in _REQUIRED_KEYS:
        if key not in entry:
            raise ValueError(f"preference data: entry {index} lacks the key {key!r} (needs {', '.join(_REQUIRED_KEYS)})")
        if not isinstance(entry[key], str):
            raise ValueError(f"preference data: entry {index}, {key!r} must be a string, got {type(entry[key]).__name__}")


class PreferenceDataset:
    """Tokenised preference pairs (notebook section 2.3): prompt, prompt + chosen, prompt + rejected.

    For each entry, with prompt = `format_input(entry)`:
        "prompt":   tokens of the prompt
        "chosen":   tokens of f"{prompt}\\n\\n### Response:\\n{entry['chosen']}"
        "rejected": tokens of f"{prompt}\\n\\n### Response:\\n{entry['rejected']}"
    each a list of ints, encoded once at construction.

    Args:
        data: list of entries with "instruction", "input", "chosen", "rejected" strings.
        tokenizer: has `encode(text)` (minigpt.tokenizer.get_encoding("gpt2")).

    Raises:
        ValueError: an entry lacks a key or has a non-string value.
    """

    def __init__(self, data, tokenizer):
        self.data = data
        self.encoded_texts = []
        for index, entry in enumerate(data):
            _check_entry(entry, index)
            prompt = format_input(entry)
            self.encoded_texts.append({
                "prompt": tokenizer.encode(prompt),
                "chosen": tokenizer.encode(f"{prompt}\n\n### Response:\n{entry['chosen']}"),
                "rejected": tokenizer.encode(f"{prompt}\n\n### Response:\n{entry['rejected']}"),
            })

    def __getitem__(self, index: int) -> dict:
        return self.encoded_texts[index]

    def __len__(self) -> int:
        return len(self.data)


def custom_collate_fn(batch, pad_token_id: int = 50256, allowed_max_length: int | None = None,
                      mask_prompt_tokens: bool = True, device: str = "cpu") -> dict:
    """Pad a list of `PreferenceDataset` items into arrays, with masks over the response tokens.

    Chosen and rejected sequences are padded with `pad_token_id` to one common length, the longest
    sequence of the batch plus one (as the notebook), so that both go through the model as (B, T)
    arrays of the same T. A mask is True on the tokens whose log-probability counts: not the
    padding, and (with `mask_prompt_tokens`) not the prompt nor the two newline tokens after it,
    so it selects "### Response:\\n" and the response.

    Args:
        batch: list of dicts with "prompt", "chosen", "rejected" token lists.
        pad_token_id: the padding id (50256, <|endoftext|>, as the book).
        allowed_max_length: keep only the first `allowed_max_length` positions of every array (the
            book passes the model's context length, 1024); None keeps all.
        mask_prompt_tokens: False keeps the prompt tokens in the masks.
        device: only "cpu" (the book's argument; arrays live in main memory).

    Returns:
        {"prompt": list of int64 arrays (one per item, unpadded),
         "chosen", "rejected": int64 arrays (B, T),
         "chosen_mask", "rejected_mask": bool arrays (B, T)}.

    Raises:
        ValueError: an empty batch, allowed_max_length < 2, or a device other than "cpu".
    """
    if device != "cpu":
        raise ValueError(f"custom_collate_fn: device must be 'cpu' (arrays are NumPy), got {device!r}")
    if not batch:
        raise ValueError("custom_collate_fn: batch is empty, expected at least one item")
    if allowed_max_length is not None and allowed_max_length < 2:
        raise ValueError(f"custom_collate_fn: allowed_max_length must be >= 2 (an input and a target), got {allowed_max_length}")
    max_length_common = max(len(item[key]) + 1 for item in batch for key in ("chosen", "rejected"))
    batch_data = {"prompt": [], "chosen": [], "rejected": [], "chosen_mask": [], "rejected_mask": []}
    for item in batch:
        prompt = np.asarray(item["prompt"], dtype=np.int64)
        batch_data["prompt"].append(prompt)
        for key in ("chosen", "rejected"):
            sequence = item[key]
            padded = np.full(max_length_common, pad_token_id, dtype=np.int64)
            padded[:len(sequence)] = sequence
            mask = np.zeros(max_length_common, dtype=bool)
            mask[:len(sequence)] = True  # padding does not count
            if mask_prompt_tokens:
                # +2: the two "\n" tokens between the prompt and "### Response:" (as the notebook).
                mask[:len(prompt) + 2] = False
            batch_data[key].append(padded)
            batch_data[f"{key}_mask"].append(mask)
    for key in ("chosen", "rejected", "chosen_mask", "rejected_mask"):
        stacked = np.stack(batch_data[key])  # (B, T)
        batch_data[key] = stacked if allowed_max_length is None else stacked[:, :allowed_max_length]
    return batch_data


def compute_logprobs(logits: Tensor, labels, selection_mask=None) -> Tensor:
    """Mean log-probability per sequence of its own next tokens (notebook section 2.4).

        logprob_b = mean over selected t >= 1 of  log softmax(logits[b, t - 1])[labels[b, t]]

    Position t - 1 predicts token t, so the labels are the inputs shifted by one and the last
    logits are dropped. With a mask, only positions t whose `selection_mask[b, t]` is True count
    (the response tokens); without one, all T - 1 positions do.

    Args:
        logits: float Tensor (B, T, V), the model's output for `labels`.
        labels: int array or Tensor (B, T), the token ids fed to the model.
        selection_mask: bool or 0/1 array (B, T), or None.

    Returns:
        A Tensor (B,) of the logits' dtype; differentiable with respect to the logits.

    Raises:
        ValueError: shapes that do not fit, fewer than 2 tokens, or a row whose mask selects no
            position after the first (its mean would be 0/0).

    NOTE: the per-token log-probabilities are computed as minus the fused cross-entropy
    (`reduction="none"`), which equals gathering `log_softmax` at the labels but neither keeps a
    second (B, T, V) array nor builds a graph of gathers.
    """
    labels = np.asarray(labels.data if isinstance(labels, Tensor) else labels)
    if logits.ndim != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(f"compute_logprobs: logits (B, T, V) need labels (B, T); got logits {logits.shape}, labels {labels.shape}")
    if labels.shape[1] < 2:
        raise ValueError(f"compute_logprobs: need at least 2 tokens per sequence, got {labels.shape[1]}")
    # (B, T - 1): log p(labels[:, t] | tokens < t) for t = 1 .. T - 1. Flattened to (B*(T-1), V) rows:
    # (B, T-1, V) logits would be read as PyTorch's (B, C, T) layout when T - 1 == V.
    targets = labels[:, 1:]  # (B, T - 1)
    flat_logits = logits[:, :-1, :].flatten(0, 1)  # (B*(T-1), V)
    selected_log_probs = -F.cross_entropy(flat_logits, targets.reshape(-1), reduction="none").reshape(targets.shape)
    if selection_mask is None:
        return selected_log_probs.mean(-1)
    mask = np.asarray(selection_mask.data if isinstance(selection_mask, Tensor) else selection_mask)
    if mask.shape != labels.shape:
        raise ValueError(f"compute_logprobs: selection_mask must have the labels' shape {labels.shape}, got {mask.shape}")
    mask = mask[:, 1:].astype(logits.dtype)  # (B, T - 1)
    counts = mask.sum(-1)  # (B,)
    if np.any(counts == 0):
        row = int(np.flatnonzero(counts == 0)[0])
        raise ValueError(f"compute_logprobs: selection_mask row {row} selects no token after the first (nothing to average)")
    return (selected_log_probs * mask).sum(-1) / counts  # average over the selected tokens


def compute_dpo_loss(model_chosen_logprobs: Tensor, model_rejected_logprobs: Tensor,
                     reference_chosen_logprobs, reference_rejected_logprobs, beta: float = 0.1):
    """The DPO loss of a batch and the mean implicit rewards (notebook section 2.4; eq. 7 of the paper).

        logits  = (policy_c - policy_r) - (reference_c - reference_r)
        loss    = mean over the batch of -log sigmoid(beta * logits)
        chosen_rewards   = mean of (policy_c - reference_c)     (detached)
        rejected_rewards = mean of (policy_r - reference_r)     (detached)

    When the policy equals the reference, the loss is ln 2 = 0.693... and both rewards are 0.
    NOTE: as the notebook, the rewards are not multiplied by beta (the paper's implicit reward is
    beta * log pi / ref); the reward margin printed during training is chosen - rejected.

    Args:
        model_chosen_logprobs, model_rejected_logprobs: Tensors (B,), the policy's mean
            log-probabilities of the chosen and rejected responses (`compute_logprobs`).
        reference_chosen_logprobs, reference_rejected_logprobs: the same for the reference model
            (Tensors or arrays; no gradient flows into them).
        beta: the strength of the KL penalty towards the reference, > 0 (0.1 to 0.5 in the
            notebook; small beta lets the policy move further from the reference).

    Returns:
        (loss, chosen_rewards, rejected_rewards): 0-d Tensors; only the loss carries a graph.

    Raises:
        ValueError: beta not a positive finite number, or the four inputs differ in shape.
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"compute_dpo_loss: beta must be a positive finite number, got {beta!r}")
    inputs = [model_chosen_logprobs, model_rejected_logprobs, reference_chosen_logprobs, reference_rejected_logprobs]
    shapes = {tuple(np.shape(value.data if isinstance(value, Tensor) else value)) for value in inputs}
    if len(shapes) != 1:
        raise ValueError(f"compute_dpo_loss: the four log-probabilities must have one shape (B,), got {sorted(shapes)}")
    reference_chosen = _constant(reference_chosen_logprobs)
    reference_rejected = _constant(reference_rejected_logprobs)
    model_logratios = model_chosen_logprobs - model_rejected_logprobs  # (B,)
    reference_logratios = reference_chosen - reference_rejected  # (B,)
    logits = model_logratios - reference_logratios  # (B,)
    dtype = logits.dtype.type
    losses = -F.logsigmoid(logits * dtype(beta))  # (B,), eq. 7 of Rafailov et al. 2023; stable for any margin
    chosen_rewards = (model_chosen_logprobs - reference_chosen).detach()
    rejected_rewards = (model_rejected_logprobs - reference_rejected).detach()
    return losses.mean(), chosen_rewards.mean(), rejected_rewards.mean()


def _constant(value) -> Tensor:
    """A Tensor without a graph (the reference model's numbers are constants of the loss)."""
    return value.detach() if isinstance(value, Tensor) else Tensor(np.asarray(value))


def compute_dpo_loss_batch(batch: dict, policy_model, reference_model, beta: float):
    """The DPO loss of one collated batch (notebook section 2.4).

    The policy runs with a graph; the reference model runs under `no_grad()`, so it keeps no
    activations for backward and its weights receive no gradient.

    Args:
        batch: a dict from `custom_collate_fn` ("chosen", "rejected", "chosen_mask", "rejected_mask").
        policy_model, reference_model: callables ids (B, T) -> logits (B, T, V).
        beta: see `compute_dpo_loss`.

    Returns:
        (loss, chosen_rewards, rejected_rewards), 0-d Tensors.
    """
    policy_chosen_log_probas = compute_logprobs(policy_model(batch["chosen"]), batch["chosen"], batch["chosen_mask"])
    policy_rejected_log_probas = compute_logprobs(policy_model(batch["rejected"]), batch["rejected"], batch["rejected_mask"])
    with no_grad():
        ref_chosen_log_probas = compute_logprobs(reference_model(batch["chosen"]), batch["chosen"], batch["chosen_mask"])
        ref_rejected_log_probas = compute_logprobs(reference_model(batch["rejected"]), batch["rejected"], batch["rejected_mask"])
    return compute_dpo_loss(
        model_chosen_logprobs=policy_chosen_log_probas,
        model_rejected_logprobs=policy_rejected_log_probas,
        reference_chosen_logprobs=ref_chosen_log_probas,
        reference_rejected_logprobs=ref_rejected_log_probas,
        beta=beta,
    )


def compute_dpo_loss_loader(data_loader, policy_model, reference_model, beta: float, num_batches: int | None = None):
    """Average loss, chosen reward and rejected reward over the first `num_batches` batches.

    As the notebook: all batches when `num_batches` is None, at most the loader's length
    otherwise, and NaN for an empty loader. Runs without recording a graph.

    Returns:
        (loss, chosen_rewards, rejected_rewards) as Python floats.

    Raises:
        ValueError: num_batches < 1.
    """
    if num_batches is not None and num_batches < 1:
        raise ValueError(f"compute_dpo_loss_loader: num_batches must be >= 1 or None, got {num_batches!r}")
    if len(data_loader) == 0:
        return float("nan"), float("nan"), float("nan")
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    total_loss = total_chosen_rewards = total_rejected_rewards = 0.0
    with no_grad():
        for i, batch in enumerate(data_loader):
            if i >= num_batches:
                break
            loss, chosen_rewards, rejected_rewards = compute_dpo_loss_batch(batch, policy_model, reference_model, beta)
            total_loss += loss.item()
            total_chosen_rewards += chosen_rewards.item()
            total_rejected_rewards += rejected_rewards.item()
    return total_loss / num_batches, total_chosen_rewards / num_batches, total_rejected_rewards / num_batches


def evaluate_dpo_loss_loader(policy_model, reference_model, train_loader, val_loader, beta: float, eval_iter: int) -> dict:
    """DPO loss and rewards on `eval_iter` batches of the training and validation loaders, in eval mode.

    Returns:
        {"train_loss", "train_chosen_reward", "train_rejected_reward",
         "val_loss", "val_chosen_reward", "val_rejected_reward"}: floats. The policy is put back
        in training mode afterwards (as the notebook).
    """
    policy_model.eval()
    train_loss, train_chosen, train_rejected = compute_dpo_loss_loader(train_loader, policy_model, reference_model, beta, eval_iter)
    val_loss, val_chosen, val_rejected = compute_dpo_loss_loader(val_loader, policy_model, reference_model, beta, eval_iter)
    policy_model.train()
    return {
        "train_loss": train_loss,
        "train_chosen_reward": train_chosen,
        "train_rejected_reward": train_rejected,
        "val_loss": val_loss,
        "val_chosen_reward": val_chosen,
        "val_rejected_reward": val_rejected,
    }


def train_model_dpo_simple(policy_model, reference_model, train_loader, val_loader, optimizer, num_epochs: int,
                           beta: float, eval_freq: int, eval_iter: int, start_context: str | None, tokenizer) -> dict:
    """The notebook's DPO training loop (section 4): epochs of batches, evaluation every `eval_freq` steps.

    The reference model is frozen (`requires_grad_(False)`, eval mode) and always runs without a
    graph; only the policy's parameters that require a gradient are trained (all of them, or only
    LoRA matrices after `replace_linear_with_lora`). Each evaluation prints one line, as the book:
    "Ep 1 (Step 000005): Train loss 0.691, Val loss 0.692, Train reward margins 0.040, Val reward
    margins 0.030". After each epoch a greedy continuation of `start_context` is printed (skipped
    when it is None).

    Args:
        policy_model: the model being trained (an instruction-tuned GPTModel).
        reference_model: a frozen copy of the policy's starting point.
        train_loader, val_loader: iterables of `custom_collate_fn` batches with `len()`.
        optimizer: e.g. AdamW over the policy's parameters (the notebook: lr 5e-6, weight decay 0.01).
        num_epochs: passes over train_loader (the notebook: 1).
        beta: see `compute_dpo_loss` (the notebook: 0.1).
        eval_freq: evaluate every this many optimizer steps (and at step 0), >= 1.
        eval_iter: batches of each loader per evaluation.
        start_context: a prompt for the sample printed after each epoch, or None.
        tokenizer: encodes / decodes the sample.

    Returns:
        tracking: lists, one entry per evaluation: "train_losses", "train_chosen_rewards",
        "train_rejected_rewards", "val_losses", "val_chosen_rewards", "val_rejected_rewards",
        "tokens_seen" (chosen tokens, padding included, as the notebook counts them).

    Raises:
        ValueError: eval_freq < 1.
    """
    if eval_freq < 1:
        raise ValueError(f"train_model_dpo_simple: eval_freq must be >= 1, got {eval_freq!r}")
    reference_model.eval()
    reference_model.requires_grad_(False)
    tracking = {key: [] for key in ("train_losses", "train_chosen_rewards", "train_rejected_rewards",
                                    "val_losses", "val_chosen_rewards", "val_rejected_rewards", "tokens_seen")}
    tokens_seen, global_step = 0, -1
    for epoch in range(num_epochs):
        policy_model.train()
        for batch in train_loader:
            optimizer.zero_grad()
            loss, _, _ = compute_dpo_loss_batch(batch, policy_model, reference_model, beta)
            loss.backward()
            optimizer.step()
            tokens_seen += batch["chosen"].size
            global_step += 1
            if global_step % eval_freq == 0:
                res = evaluate_dpo_loss_loader(policy_model, reference_model, train_loader, val_loader, beta, eval_iter)
                for name in ("train", "val"):
                    tracking[f"{name}_losses"].append(res[f"{name}_loss"])
                    tracking[f"{name}_chosen_rewards"].append(res[f"{name}_chosen_reward"])
                    tracking[f"{name}_rejected_rewards"].append(res[f"{name}_rejected_reward"])
                tracking["tokens_seen"].append(tokens_seen)
                train_reward_margin = res["train_chosen_reward"] - res["train_rejected_reward"]
                val_reward_margin = res["val_chosen_reward"] - res["val_rejected_reward"]
                print(
                    f"Ep {epoch + 1} (Step {global_step:06d}): "
                    f"Train loss {res['train_loss']:.3f}, Val loss {res['val_loss']:.3f}, "
                    f"Train reward margins {train_reward_margin:.3f}, "
                    f"Val reward margins {val_reward_margin:.3f}"
                )
        if start_context is not None:
            generate_and_print_sample(policy_model, tokenizer, start_context)
    return tracking
