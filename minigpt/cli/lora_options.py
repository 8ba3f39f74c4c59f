"""`--lora RANK [--lora-alpha A]`: LoRA fine-tuning for the `minigpt finetune` tasks (appendix E).

A task adds the flags with `add_lora_arguments(parser)`; after its model is built (and its head
replaced), `apply_lora(command, model, args)` freezes every parameter and wraps every Linear, as
appendix E does, when --lora is given; before saving, `merge_lora(model)` (minigpt.nn) folds the
update back, so the checkpoint holds a plain GPTModel that every other command loads.
"""

from __future__ import annotations

from minigpt.cli.common import fail


def add_lora_arguments(parser) -> None:
    """--lora and --lora-alpha."""
    parser.add_argument("--lora", type=int, default=None, metavar="RANK",
                        help="fine-tune with LoRA of this rank (appendix E: 16): freeze every weight and train two "
                        "thin matrices per Linear layer; the update is merged into the weights before saving")
    parser.add_argument("--lora-alpha", type=float, default=None, metavar="A",
                        help="LoRA's scale numerator: the update is scaled by A / RANK (default: RANK, scale 1, as the book)")


def apply_lora(command: str, model, args, rng=None) -> bool:
    """Freeze `model` and wrap every Linear with LoRA when --lora is given; returns whether it did.

    Raises SystemExit (through `fail`) for a rank below 1, or --lora-alpha without --lora.
    """
    from minigpt.nn import replace_linear_with_lora

    if args.lora is None:
        if args.lora_alpha is not None:
            fail(command, "--lora-alpha scales a LoRA update: give --lora RANK with it")
        return False
    if args.lora < 1:
        fail(command, f"--lora must be a rank >= 1, got {args.lora}")
    alpha = float(args.lora) if args.lora_alpha is None else args.lora_alpha
    for parameter in model.parameters():  # appendix E: freeze everything, then add the adapters
        parameter.requires_grad = False
    replace_linear_with_lora(model, rank=args.lora, alpha=alpha, rng=rng)
    return True
