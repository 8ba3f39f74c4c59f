"""The model a server serves: a checkpoint or OpenAI's GPT-2, what kind it is, and its prompts.

`load_served_model` reads what the other commands read (`minigpt generate --checkpoint/--model`,
`minigpt chat`, `minigpt classify`) and says which of three kinds it is:

- "base": a pretrained GPT (`minigpt train`, or `--model gpt2-small`): plain completion, the text
  continues the prompt (book ch. 5, `generate`);
- "instruct": a run of `minigpt finetune instruct` (book ch. 7): a chat message becomes the book's
  Alpaca prompt, `format_input({"instruction": message, "input": ""}) + "\\n\\n### Response:\\n"`,
  exactly the text the model was fine-tuned on (as `minigpt chat`);
- "classifier": a run of `minigpt finetune classify` (book ch. 6): a text gets a label and the
  probability of every label (`classify_texts`), and nothing is generated.

References: Raschka, "Build a Large Language Model (From Scratch)", chapters 5.3 (generate),
6.8 (classify_review) and 7.2 (format_input); the book's user-interface bonus folders
ch05/06_user_interface, ch06/04_user_interface, ch07/06_user_interface.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

KINDS = ("base", "instruct", "classifier")


@dataclass
class ServedModel:
    """A loaded model and what the server needs to know about it.

    Attributes:
        model: the GPTModel (in eval mode). tokenizer: its tokenizer (encode/decode, maybe eot_token).
        kind: "base", "instruct" or "classifier" (see the module docstring).
        name: the model's id in the API (`/v1/models`): the run directory's name, or "gpt2-small".
        source: where it came from (a path or a preset name), for the log and the page.
        eos_id: the end-of-text id that ends a generation, or None (a character-level model).
        classifier: `minigpt finetune classify`'s settings (label_names, pooling, max_length,
            pad_token_id) for a classifier, else None.
    """

    model: object
    tokenizer: object
    kind: str
    name: str
    source: str
    eos_id: int | None = None
    classifier: dict | None = field(default=None)

    @property
    def context_length(self) -> int:
        """The most tokens the model sees at once (its position table's size)."""
        return int(self.model.cfg.context_length)

    def describe(self) -> dict:
        """What the page shows about the model: JSON-ready, sizes in parameters and tokens."""
        return {"kind": self.kind, "source": self.source, "parameters": int(self.model.num_parameters()),
                "context_length": self.context_length, "vocab_size": int(self.model.cfg.vocab_size),
                "n_layers": int(self.model.cfg.n_layers), "emb_dim": int(self.model.cfg.emb_dim),
                "label_names": list(self.classifier["label_names"]) if self.classifier else None}


def load_served_model(checkpoint: str | None = None, model: str | None = None, name: str | None = None) -> ServedModel:
    """Load a checkpoint directory (or file) or a pretrained GPT-2 for serving.

    Args:
        checkpoint: a run of `minigpt train`, `minigpt finetune instruct` or `minigpt finetune
            classify` (its directory or its checkpoint.safetensors).
        model: "gpt2-small" ... "gpt2-xl" (downloaded once), or a Hugging Face GPT-2 directory or
            .safetensors file; exactly one of checkpoint and model.
        name: the model's id in the API; default the run directory's name or `model`.

    Returns:
        A ServedModel.

    Raises:
        ValueError: neither or both given, or a file that is not a checkpoint of these commands
            (the message names the path). FileNotFoundError: no such checkpoint.
    """
    from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint
    from minigpt.cli.common import end_of_text_id, make_tokenizer
    from minigpt.model import GPTModel, get_config

    if (checkpoint is None) == (model is None):
        raise ValueError(f"load_served_model: give exactly one of checkpoint and model, got checkpoint={checkpoint!r}, model={model!r}")
    if model is not None:
        gpt = GPTModel.from_pretrained(model)
        gpt.eval()
        tokenizer = make_tokenizer({"name": "gpt2"})
        default_name = os.path.basename(os.path.normpath(model)) if os.path.exists(model) else model
        return ServedModel(gpt, tokenizer, "base", name or default_name, model, end_of_text_id(tokenizer, gpt))
    path = os.path.join(checkpoint, CHECKPOINT_NAME) if os.path.isdir(checkpoint) else checkpoint
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {checkpoint!r}: no checkpoint there (expected a run directory holding {CHECKPOINT_NAME}, or the file)")
    state, _, metadata = load_checkpoint(path)
    run_name = name or os.path.basename(os.path.dirname(os.path.abspath(path)))
    if "classifier" in metadata:
        from minigpt.finetune.classification import replace_output_head

        settings = metadata["classifier"]
        gpt = GPTModel(get_config(settings["model_config"]), rng=0)
        replace_output_head(gpt, settings["num_classes"], rng=0)
        gpt.load_state_dict(state)
        gpt.eval()
        return ServedModel(gpt, make_tokenizer(settings["tokenizer"]), "classifier", run_name, checkpoint, None, settings)
    if "trainer" not in metadata:
        raise ValueError(f"checkpoint {checkpoint!r}: not a run of `minigpt train`, `minigpt finetune instruct` or "
                         "`minigpt finetune classify` (its metadata has neither trainer nor classifier state)")
    run_info = metadata["trainer"]["run_info"]
    gpt = GPTModel(get_config(run_info["model_config"]), rng=0)
    gpt.load_state_dict(state)
    gpt.eval()
    tokenizer = make_tokenizer(run_info["tokenizer"])
    kind = "instruct" if run_info.get("task") == "instruct" else "base"
    return ServedModel(gpt, tokenizer, kind, run_name, checkpoint, end_of_text_id(tokenizer, gpt))


def chat_prompt(served: ServedModel, messages: list[dict]) -> str:
    """The text the model continues for a chat: the book's Alpaca prompt or the plain conversation.

    An instruction-tuned model was fine-tuned on one instruction and one response (book 7.2), so
    it gets the last user message as the instruction, in `format_input` + the response header. A
    base model continues the messages' texts joined by blank lines. (System and earlier messages
    are part of a base model's text; an instruction-tuned model, trained on single turns, sees
    only the last user message.)

    Args:
        messages: checked OpenAI-style messages, [{"role": ..., "content": str}, ...], not empty.
    """
    if served.kind == "instruct":
        from minigpt.finetune.instruction import RESPONSE_HEADER, format_input

        users = [message["content"] for message in messages if message["role"] == "user"]
        instruction = users[-1] if users else messages[-1]["content"]
        return format_input({"instruction": instruction, "input": ""}) + RESPONSE_HEADER
    return "\n\n".join(message["content"] for message in messages)
