"""`minigpt finetune dpo`: preference tuning with DPO, the book's chapter-7 bonus notebook.

    minigpt finetune dpo --checkpoint runs/instruct      # a model instruction-tuned by `minigpt finetune instruct`

Loads the instruction-tuned model twice (the policy, which trains, and the frozen reference), the
bundled preference data (or --data) split 85/10/5 as chapter 7, prints the validation loss and
reward margin before training and three validation responses of the model, runs
`train_model_dpo_simple` with the notebook's settings (beta 0.1, AdamW lr 5e-6, weight decay
0.01, 1 epoch, batch 8, evaluation of 5 batches every 5 steps), and prints the margin after and
the three responses of the reference and the policy next to the chosen and rejected ones.
In --out it leaves

    checkpoint.safetensors     the preference-tuned weights (for `minigpt generate --checkpoint`)
    history.json               losses and rewards at every evaluation
    loss.png, reward-margins.png   the notebook's two figures

The task's parser and runner are `add_dpo_parser(tasks)` / `run_dpo(args)`, registered under
`minigpt finetune` in `minigpt/cli/finetune.py`.
"""

from __future__ import annotations

import copy
import json
import os
import time

import numpy as np

from minigpt.cli.common import fail, kernels_note, load_run_checkpoint, make_tokenizer, save_after_interrupt
from minigpt.cli.finetune_options import add_output_arguments, add_training_arguments, check_training_arguments
from minigpt.interrupts import StopBetweenSteps

COMMAND = "finetune dpo"


def add_dpo_parser(tasks) -> None:
    parser = tasks.add_parser(
        "dpo", help="preference tuning with DPO (book ch. 7 bonus): prefer the chosen over the rejected answers",
        description="Direct preference optimisation of an instruction-tuned GPT on the book's 1,100 chosen/rejected "
        "pairs, against a frozen copy of itself. Defaults are the notebook's: beta 0.1, AdamW lr 5e-6, weight decay "
        "0.01, 1 epoch, batch 8.")
    parser.add_argument("--checkpoint", metavar="DIR", required=True,
                        help="an instruction-tuned model: the run directory of `minigpt finetune instruct`")
    parser.add_argument("--data", default=None, help="preference JSON (instruction, input, chosen, rejected); "
                        "default: the bundled book data")
    parser.add_argument("--beta", type=float, default=0.1, help="DPO's beta: how far the policy may move from the "
                        "reference (the notebook: 0.1; 0.1 to 0.5)")
    add_training_arguments(parser, epochs=1, batch_size=8, lr=5e-6, weight_decay=0.01, eval_every=5, eval_batches=5,
                           items="pairs", estimates="the losses and reward margins", source="the notebook")
    parser.add_argument("--max-examples", type=int, default=None, help="use only the first N entries of each split "
                        "(a quick run)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="tokens per response shown before/after")
    add_output_arguments(parser, seeds="the shuffling", out="runs/dpo", contents="checkpoint, history, plots")


def _check_arguments(args) -> None:
    check_training_arguments(COMMAND, args, max_new_tokens=args.max_new_tokens, max_examples=args.max_examples)
    if not args.beta > 0:
        fail(COMMAND, f"--beta must be > 0, got {args.beta}")


def _responses(models: dict, entries, tokenizer, context_length: int, max_new_tokens: int) -> dict:
    """Greedy responses of each model to each entry's prompt (stopping at <|endoftext|>)."""
    from minigpt.finetune.instruction import extract_response, format_input
    from minigpt.generate import generate, text_to_token_ids, token_ids_to_text

    answers = {name: [] for name in models}
    for entry in entries:
        input_text = format_input(entry)
        for name, model in models.items():
            ids = generate(model, text_to_token_ids(input_text, tokenizer), max_new_tokens=max_new_tokens,
                           context_size=context_length, eos_id=tokenizer.eot_token)
            # The notebook's extract_response: drop the prompt and the "### Response:" header.
            answers[name].append(extract_response(token_ids_to_text(ids, tokenizer), input_text))
    return answers


def _print_responses(entries, answers: dict) -> None:
    from minigpt.finetune.instruction import format_input

    for index, entry in enumerate(entries):
        print(format_input(entry))
        print(f"\nChosen response:\n>> {entry['chosen']}")
        print(f"\nRejected response:\n>> {entry['rejected']}")
        for name, responses in answers.items():
            print(f"\n{name} response:\n>> {responses[index]}")
        print("\n-------------------------------------\n")


def _save_weights(out: str, policy_model, metadata: dict, settings: dict) -> str:
    """Write out/checkpoint.safetensors atomically: the policy's weights, the instruction-tuned run's
    metadata (which `minigpt generate --checkpoint` reads) and the DPO settings. Returns its path."""
    from minigpt.checkpoint import CHECKPOINT_NAME, save_checkpoint

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, CHECKPOINT_NAME)
    save_checkpoint(path, policy_model.state_dict(), None, {**metadata, "dpo": settings})
    return path


def _splits(args):
    """(train, test, validation) pairs of --data: the notebook's 85 / 10 / 5 split (chapter 7's), cut
    to --max-examples each; enough for one batch and one validation pair."""
    from minigpt.finetune import preference as dpo
    from minigpt.finetune.instruction import split_instruction_data

    try:
        data = dpo.load_preference_data(args.data)
    except (OSError, ValueError) as error:
        fail(COMMAND, f"--data {args.data}: {error}")
    train_data, test_data, val_data = split_instruction_data(data)  # the notebook's 85 / 10 / 5, chapter 7's
    if args.max_examples is not None:
        train_data, test_data, val_data = (part[:args.max_examples] for part in (train_data, test_data, val_data))
    if len(train_data) < args.batch_size or not val_data:
        fail(COMMAND, f"the split gives {len(train_data)} training and {len(val_data)} validation pairs; need at least "
             f"--batch-size={args.batch_size} for training and one for validation")
    return train_data, test_data, val_data


def _plot(args, tracking: dict) -> None:
    """The notebook's two figures, losses and reward margins against epochs, when there were evaluations."""
    from minigpt.train import plot_losses, save_plot

    if not tracking["val_losses"]:
        return
    train_margins = [c - r for c, r in zip(tracking["train_chosen_rewards"], tracking["train_rejected_rewards"])]
    val_margins = [c - r for c, r in zip(tracking["val_chosen_rewards"], tracking["val_rejected_rewards"])]
    epochs_seen = np.linspace(0, args.epochs, len(tracking["train_losses"]))
    for name, train_values, val_values, label in (("loss.png", tracking["train_losses"], tracking["val_losses"], "loss"),
                                                   ("reward-margins.png", train_margins, val_margins, "reward margins")):
        save_plot(os.path.join(args.out, name), lambda temporary: plot_losses(
            epochs_seen, tracking["tokens_seen"], train_values, val_values, path=temporary, label=label))


def run_dpo(args) -> int:
    """Run `minigpt finetune dpo` with parsed arguments."""
    from functools import partial

    from minigpt.data import DataLoader
    from minigpt.finetune import preference as dpo
    from minigpt.model import GPTModel, get_config
    from minigpt.optim import AdamW

    _check_arguments(args)
    train_data, test_data, val_data = _splits(args)

    _, model_state, _, metadata = load_run_checkpoint(COMMAND, "--checkpoint", args.checkpoint)
    run_info = metadata["trainer"]["run_info"]
    policy_model = GPTModel(get_config(run_info["model_config"], drop_rate=0.0), rng=args.seed)
    policy_model.load_state_dict(model_state)
    reference_model = copy.deepcopy(policy_model).eval()
    reference_model.requires_grad_(False)
    tokenizer = make_tokenizer(run_info["tokenizer"])
    context_length = policy_model.cfg.context_length
    print(f"policy and reference: checkpoint {args.checkpoint} ({policy_model.num_parameters():,} parameters){kernels_note(args)}")
    print(f"data: {len(train_data)} training, {len(val_data)} validation, {len(test_data)} test pairs | beta {args.beta} | "
          f"AdamW lr {args.lr} weight decay {args.weight_decay} | {args.epochs} epoch(s) of batch {args.batch_size}")

    collate = partial(dpo.custom_collate_fn, pad_token_id=tokenizer.eot_token, allowed_max_length=context_length)
    train_loader = DataLoader(dpo.PreferenceDataset(train_data, tokenizer), batch_size=args.batch_size, shuffle=True,
                              drop_last=True, collate_fn=collate, seed=args.seed)
    val_loader = DataLoader(dpo.PreferenceDataset(val_data, tokenizer), batch_size=args.batch_size, collate_fn=collate)

    before = dpo.evaluate_dpo_loss_loader(policy_model, reference_model, train_loader, val_loader, args.beta, args.eval_batches)
    margin_before = before["val_chosen_reward"] - before["val_rejected_reward"]
    print(f"before: validation loss {before['val_loss']:.4f}, validation reward margin {margin_before:.4f}")
    shown = val_data[:3]

    optimizer = AdamW(policy_model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    settings = {"beta": args.beta, "lr": args.lr, "weight_decay": args.weight_decay, "epochs": args.epochs,
                "source": args.checkpoint, "val_reward_margin_before": margin_before}
    start = time.time()
    stops = StopBetweenSteps(optimizer)  # Ctrl-C / SIGTERM: stop after a complete step, then save its weights
    try:
        with stops:
            tracking = dpo.train_model_dpo_simple(
                policy_model, reference_model, train_loader, val_loader, optimizer, num_epochs=args.epochs, beta=args.beta,
                eval_freq=args.eval_every, eval_iter=args.eval_batches, start_context=None, tokenizer=tokenizer)
    except KeyboardInterrupt:
        total_steps = args.epochs * len(train_loader)
        interrupted = {**settings, "interrupted_after_step": stops.completed_steps, "total_steps": total_steps}
        return save_after_interrupt(COMMAND, stops.requests.signal, stops.completed_steps, total_steps,
                                    lambda: _save_weights(args.out, policy_model, metadata, interrupted),
                                    f"minigpt generate --checkpoint {args.out} --prompt TEXT")
    print(f"Training completed in {(time.time() - start) / 60:.2f} minutes.")
    after = dpo.evaluate_dpo_loss_loader(policy_model, reference_model, train_loader, val_loader, args.beta, args.eval_batches)
    margin_after = after["val_chosen_reward"] - after["val_rejected_reward"]
    print(f"after: validation loss {after['val_loss']:.4f}, validation reward margin {margin_after:.4f} "
          f"(before: {margin_before:.4f})")

    checkpoint_path = _save_weights(args.out, policy_model, metadata, {**settings, "val_reward_margin_after": margin_after})
    with open(os.path.join(args.out, "history.json"), "w", encoding="utf-8") as file:
        json.dump({"before": before, "after": after, **tracking}, file, indent=1)
    _plot(args, tracking)
    print(f"saved {checkpoint_path}, history.json and the plots in {args.out}\n")

    answers = _responses({"Reference model": reference_model, "Policy model": policy_model}, shown, tokenizer,
                         context_length, args.max_new_tokens)
    _print_responses(shown, answers)
    return 0
