"""`minigpt classify`: label texts with a classifier fine-tuned by `minigpt finetune classify` (book ch. 6.8).

    minigpt classify --checkpoint runs/classify "You are a winner! Claim your $1000 prize now"
    minigpt classify --checkpoint runs/classify --data messages.tsv      # label<TAB>text lines: accuracy too
"""

from __future__ import annotations

import sys

from minigpt.cli.common import add_threads_argument, fail, report_kernels

COMMAND = "classify"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("classify", help="label texts with a fine-tuned classifier (book ch. 6.8)",
                                   description="Print the predicted label and its probability for each text, using a "
                                   "checkpoint written by `minigpt finetune classify`.")
    parser.add_argument("texts", nargs="*", help="texts to classify")
    parser.add_argument("--checkpoint", required=True, metavar="DIR", help="the run directory of `minigpt finetune classify`")
    parser.add_argument("--data", metavar="FILE.tsv", help="classify every line of a label<TAB>text file (and report "
                        "the accuracy against its labels)")
    parser.add_argument("--truncate", action="store_true", help="classify the first tokens of texts longer than the model's context")
    parser.add_argument("--batch-size", type=int, default=16, help="texts per forward pass")
    add_threads_argument(parser)


def run(args) -> int:
    """Run `minigpt classify` with parsed arguments."""
    import numpy as np

    from minigpt.cli.finetune import load_classifier
    from minigpt.finetune.classification import classify_texts, load_spam_data

    if not args.texts and args.data is None:
        fail(COMMAND, "give texts to classify, or --data FILE.tsv")
    if args.texts and args.data is not None:  # otherwise one of them would be silently ignored or mixed in
        fail(COMMAND, f"give texts or --data, not both (got {len(args.texts)} text(s) and --data {args.data})")
    if args.batch_size < 1:
        fail(COMMAND, f"--batch-size must be >= 1, got {args.batch_size}")
    model, tokenizer, classifier = load_classifier(COMMAND, "--checkpoint", args.checkpoint)
    report_kernels(args)
    label_names = classifier["label_names"]
    texts, labels = list(args.texts), [None] * len(args.texts)
    if args.data is not None:
        try:
            records = load_spam_data(args.data)
        except (OSError, ValueError, UnicodeDecodeError) as error:
            fail(COMMAND, f"--data {args.data}: {error}")
        texts += [text for _, text in records]
        labels += [label for label, _ in records]
    try:
        # Each text keeps its own length: with the last real token classified, padding changes
        # nothing, and a text longer than the training examples is not cut.
        pooling = classifier["pooling"]
        max_length = classifier["max_length"] if pooling == "last" else None  # "last" needs the training padding
        probabilities = classify_texts(texts, model, tokenizer, max_length, classifier["pad_token_id"], pooling=pooling,
                                       truncation=args.truncate or max_length is not None, batch_size=args.batch_size)
    except ValueError as error:
        fail(COMMAND, f"{error}")
    predicted = np.argmax(probabilities, axis=1)
    for text, label_id, row in zip(texts, predicted, probabilities):
        print(f"{label_names[label_id]}\t{row[label_id]:.3f}\t{text}")
    known = [(label, label_names[i]) for label, i in zip(labels, predicted) if label is not None]
    if known:
        unknown = sorted({label for label, _ in known} - set(label_names))
        correct = sum(label == guess for label, guess in known)
        note = f" (labels the classifier does not know: {', '.join(unknown)})" if unknown else ""
        print(f"accuracy: {correct / len(known) * 100:.2f}% ({correct} of {len(known)}){note}", file=sys.stderr)
    return 0
