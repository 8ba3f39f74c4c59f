"""`minigpt finetune instruct`: the book's chapter 7 from the command line.

    minigpt finetune instruct --model gpt2-medium        # the book's run: 2 epochs, batch 8, AdamW 5e-5
    minigpt finetune instruct --checkpoint runs/tiny     # a model pretrained with `minigpt train`
    minigpt finetune instruct --lora 16                  # LoRA: the book's exercise 7.4 (rank 16, alpha 16, lr 5e-5)

Loads the model and the bundled instruction data (or --data), splits it 85/10/5 (train, test,
validation), prints the initial losses, fine-tunes with a progress bar (the book's settings by
default: AdamW lr 5e-5, weight decay 0.1, 2 epochs, batch 8, evaluation of 5 batches every 5
steps, a greedy answer to the first validation prompt after each epoch), then answers the test
set with the KV cache, batched, stopping at end-of-text. In --out it leaves

    checkpoint.safetensors               the fine-tuned weights (for `minigpt chat` / `generate --checkpoint`)
    history.json, loss.png               the losses against steps and tokens seen (book figure 7.17)
    instruction-data-with-response.json  the test entries with each `model_response` (book section 7.7)

and prints the offline score of the answers (`minigpt evaluate` prints more, and asks a judge).

The task's parser and runner are `add_instruct_parser(tasks)` / `run_instruct(args)`, registered
under `minigpt finetune` in `minigpt/cli/finetune.py`.
"""

from __future__ import annotations

import json
import os
import time

from minigpt.cli.common import fail, kernels_note, save_after_interrupt
from minigpt.cli.finetune_options import (add_output_arguments, add_training_arguments, check_training_arguments,
                                          load_base_model)
from minigpt.cli.lora_options import add_lora_arguments, apply_lora

COMMAND = "finetune instruct"
RESPONSES_NAME = "instruction-data-with-response.json"


def add_instruct_parser(tasks) -> None:
    parser = tasks.add_parser(
        "instruct", help="instruction fine-tuning (book ch. 7): a GPT that follows instructions",
        description="Fine-tune a GPT on instruction/response pairs (the book's chapter 7: Alpaca-style prompts, "
        "the 1,100 bundled examples split 85/10/5), then answer the test set and save the answers. Defaults are the "
        "book's: --model gpt2-medium, AdamW lr 5e-5, weight decay 0.1, 2 epochs, batch 8.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="pretrained weights: gpt2-medium (default, the book's), gpt2-small, gpt2-large, "
                        "gpt2-xl (downloaded once), or a Hugging Face GPT-2 directory / .safetensors file")
    source.add_argument("--checkpoint", metavar="DIR", help="a model pretrained with `minigpt train` (its run directory)")
    parser.add_argument("--data", default=None, help="a JSON list of {instruction, input, output} entries (default: the "
                        "book's bundled instruction-data.json, 1,100 entries)")
    parser.add_argument("--max-examples", type=int, default=None, help="use only the first N entries of each split "
                        "(a quick trial, as the book script's --test_mode with 10)")
    add_training_arguments(parser, epochs=2, batch_size=8, lr=5e-5, weight_decay=0.1, eval_every=5, eval_batches=5,
                           items="entries", estimates="the train and validation loss", source="the book")
    parser.add_argument("--drop-rate", type=float, default=0.0, help="dropout probability while fine-tuning (the book: 0)")
    parser.add_argument("--allowed-max-length", type=int, default=None, help="cut batches to this many tokens "
                        "(default: the model's context length; the book: 1024)")
    parser.add_argument("--mask-instruction", action="store_true", help="learn only the responses: ignore the "
                        "prompt's targets in the loss (the book's exercise 7.2)")
    add_lora_arguments(parser)  # the book's exercise 7.4: --lora 16 (alpha 16)
    parser.add_argument("--max-new-tokens", type=int, default=256, help="tokens per test answer at most (the book: 256)")
    parser.add_argument("--generate-batch-size", type=int, default=8, help="test prompts answered together")
    add_output_arguments(parser, seeds="the shuffling (and of dropout)", out="runs/instruct",
                         contents="checkpoint, history, loss plot, answers")


def _check_arguments(args) -> None:
    check_training_arguments(COMMAND, args, generate_batch_size=args.generate_batch_size, max_examples=args.max_examples,
                             allowed_max_length=args.allowed_max_length)
    if args.max_new_tokens < 0:
        fail(COMMAND, f"--max-new-tokens must be >= 0, got {args.max_new_tokens}")
    if not 0 <= args.drop_rate < 1:
        fail(COMMAND, f"--drop-rate must be in [0, 1), got {args.drop_rate}")


def _splits(args):
    from minigpt.finetune.instruction import load_instruction_data, split_instruction_data

    try:
        data = load_instruction_data(args.data)
    except (OSError, ValueError) as error:
        fail(COMMAND, f"--data {args.data}: {error}")
    train_data, test_data, val_data = split_instruction_data(data)
    if args.max_examples is not None:
        train_data, test_data, val_data = (part[:args.max_examples] for part in (train_data, test_data, val_data))
    if len(train_data) < args.batch_size or not val_data:
        fail(COMMAND, f"the split gives {len(train_data)} training and {len(val_data)} validation entries; need at least "
             f"--batch-size={args.batch_size} for training and one for validation")
    return data, train_data, test_data, val_data


def _save_weights(out: str, model, trainer, lora: bool) -> str:
    """Write out/checkpoint.safetensors atomically: the weights and the run's description only (the
    optimizer's moments, twice the weights, are not needed to use the model; `minigpt chat` and
    `generate --checkpoint` read this file). Returns its path."""
    from minigpt.checkpoint import CHECKPOINT_NAME, save_checkpoint

    if lora:
        from minigpt.nn import merge_lora

        # A plain GPTModel again (`minigpt chat` loads it like any other), and the test answers run
        # without the two extra products. Merging unties a tied head, so the config is stored anew.
        merge_lora(model)
        trainer.run_info["model_config"] = model.cfg.to_dict()
    path = os.path.join(out, CHECKPOINT_NAME)
    save_checkpoint(path, model.state_dict(), None, {"trainer": trainer.state()})
    return path


def _lengths(args, model, tokenizer):
    """(context_length, allowed_max_length, eos_id): the model's context, the longest padded batch
    (--allowed-max-length, the book's 1024 by default: the context), and <|endoftext|>, which pads
    and ends the answers; each checked against the model."""
    context_length, vocab_size = model.pos_emb.weight.shape[0], model.tok_emb.weight.shape[0]
    allowed_max_length = args.allowed_max_length or context_length
    if allowed_max_length > context_length:
        fail(COMMAND, f"--allowed-max-length {allowed_max_length} is longer than the model's context of {context_length} tokens")
    eos_id = getattr(tokenizer, "eot_token", None)
    if eos_id is None or eos_id >= vocab_size:
        fail(COMMAND, f"the model's vocabulary of {vocab_size:,} ids has no <|endoftext|> id "
             f"({eos_id}) to end the answers with: instruction tuning needs a GPT-2-vocabulary model")
    return context_length, allowed_max_length, eos_id


def _loaders(args, tokenizer, train_data, val_data, eos_id: int, allowed_max_length: int, vocab_size: int):
    """(train_loader, val_loader, unshuffled_train_loader) of the book's InstructionDataset and
    custom_collate_fn (sections 7.3-7.4); the unshuffled one estimates the training loss. Every
    token id of the data is checked against the model's `vocab_size`."""
    from functools import partial

    from minigpt.data import DataLoader
    from minigpt.finetune.instruction import InstructionDataset, custom_collate_fn

    datasets = {name: InstructionDataset(part, tokenizer) for name, part in (("train", train_data), ("val", val_data))}
    largest = max(max(max(ids) for ids in dataset.encoded_texts) for dataset in datasets.values())
    if largest >= vocab_size:
        fail(COMMAND, f"token id {largest} of the data is outside the model's vocabulary [0, {vocab_size})")
    collate = partial(custom_collate_fn, pad_token_id=eos_id, allowed_max_length=allowed_max_length,
                      mask_instruction=args.mask_instruction)
    train_loader = DataLoader(datasets["train"], batch_size=args.batch_size, shuffle=True, drop_last=True,
                              collate_fn=collate, seed=args.seed)
    val_loader = DataLoader(datasets["val"], batch_size=args.batch_size, collate_fn=collate)
    unshuffled_train_loader = DataLoader(datasets["train"], batch_size=args.batch_size, collate_fn=collate)
    return train_loader, val_loader, unshuffled_train_loader


def _answer_the_test_set(args, model, tokenizer, test_data, eos_id: int) -> bool:
    """Answer the test set, save the responses (section 7.6) and print their scores; True when
    interrupted meanwhile."""
    from minigpt.finetune.instruction import generate_responses, save_responses
    from minigpt.finetune.metrics import score_responses

    try:
        responses = generate_responses(model, tokenizer, test_data, max_new_tokens=args.max_new_tokens, eos_id=eos_id,
                                       batch_size=args.generate_batch_size)
    except KeyboardInterrupt:
        print(f"\ninterrupted while answering the test set: the model is saved in {args.out}")
        return True
    responses_path = os.path.join(args.out, RESPONSES_NAME)
    entries = save_responses(test_data, responses, responses_path)
    scores = score_responses(entries)
    print(f"Responses saved as {responses_path}")
    print(f"test set: ROUGE-L F1 {scores['rouge_l_f1']:.3f}, exact match {100 * scores['exact_match']:.1f} % "
          f"({len(entries)} entries); more: minigpt evaluate {responses_path}")
    return False


def run_instruct(args) -> int:
    """Run `minigpt finetune instruct` with parsed arguments."""
    from minigpt.finetune.instruction import format_input
    from minigpt.optim import AdamW
    from minigpt.train import calc_loss_loader
    from minigpt.trainer import Trainer, TrainingConfig, plot_history

    _check_arguments(args)
    data, train_data, test_data, val_data = _splits(args)

    model, tokenizer, source = load_base_model(args, COMMAND, default_model="gpt2-medium")
    context_length, allowed_max_length, eos_id = _lengths(args, model, tokenizer)

    train_loader, val_loader, unshuffled_train_loader = _loaders(args, tokenizer, train_data, val_data, eos_id,
                                                                allowed_max_length, model.tok_emb.weight.shape[0])

    lora = apply_lora(COMMAND, model, args, rng=args.seed)  # exercise 7.4: freeze, then wrap every Linear
    os.makedirs(args.out, exist_ok=True)
    print(f"model: {source}, {model.num_parameters():,} parameters, context {context_length}"
          + (f", {model.num_parameters(trainable_only=True):,} trainable (LoRA rank {args.lora})" if lora else "")
          + kernels_note(args))
    print(f"data: {args.data or 'instruction-data.json (bundled)'}: {len(data):,} entries -> {len(train_data)} train / "
          f"{len(test_data)} test / {len(val_data)} validation; {len(train_loader)} batches of {args.batch_size} per epoch"
          + (" (instruction targets masked)" if args.mask_instruction else ""))
    model.eval()
    initial_train = calc_loss_loader(unshuffled_train_loader, model, num_batches=args.eval_batches)
    initial_val = calc_loss_loader(val_loader, model)
    print(f"Initial losses\n   Training loss: {initial_train:.4f} ({args.eval_batches} batches)\n"
          f"   Validation loss: {initial_val:.4f} (all {len(val_data)} entries)")

    optimizer = AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    config = TrainingConfig(epochs=args.epochs, lr=args.lr, weight_decay=args.weight_decay, eval_every=args.eval_every,
                            eval_batches=args.eval_batches, sample_every=len(train_loader),
                            sample_prompt=format_input(val_data[0]), sample_tokens=35, seed=args.seed)
    run_info = {"model_config": model.cfg.to_dict(), "tokenizer": {"name": "gpt2"}, "source": source,
                "data": os.path.abspath(args.data) if args.data else "instruction-data.json (bundled)",
                "task": "instruct", "mask_instruction": args.mask_instruction, "allowed_max_length": allowed_max_length,
                "lora": {"rank": args.lora, "alpha": float(args.lora if args.lora_alpha is None else args.lora_alpha)} if lora else None}
    trainer = Trainer(model, optimizer, train_loader, val_loader, config, tokenizer=tokenizer, run_info=run_info)
    started = time.perf_counter()
    try:
        history = trainer.fit()  # Ctrl-C / SIGTERM: the Trainer stops after a complete step (minigpt/interrupts.py)
    except KeyboardInterrupt:
        return save_after_interrupt(COMMAND, trainer.stop_signal, trainer.step, trainer.total_steps,
                                    lambda: _save_weights(args.out, model, trainer, lora),
                                    f"minigpt chat --checkpoint {args.out}, or minigpt generate --checkpoint {args.out}")
    print(f"Training completed in {(time.perf_counter() - started) / 60:.2f} minutes.")
    model.eval()
    final_val = calc_loss_loader(val_loader, model)
    print(f"Validation loss: {initial_val:.4f} before, {final_val:.4f} after (all {len(val_data)} entries)")
    checkpoint_path = _save_weights(args.out, model, trainer, lora)
    with open(os.path.join(args.out, "history.json"), "w", encoding="utf-8") as file:
        json.dump(history, file)
    plot_path = plot_history(history, os.path.join(args.out, "loss.png"))
    print(f"saved {checkpoint_path}" + (f" and {plot_path}" if plot_path else " (install matplotlib for loss.png)"))

    if test_data and _answer_the_test_set(args, model, tokenizer, test_data, eos_id):
        return 130  # interrupted while answering: the model is saved
    print(f"talk to it: minigpt chat --checkpoint {args.out}")
    return 0
