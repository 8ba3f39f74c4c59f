"""Fine-tuning a pretrained GPT for a task (book chapters 6 and 7, and preference tuning).

- `minigpt.finetune.classification`: chapter 6, a text classifier (the SMS spam detector) from a
  GPT whose output head is replaced by a small linear layer, with most blocks frozen.
- `minigpt.finetune.instruction`: chapter 7, instruction fine-tuning (Alpaca-style prompts, the
  padding collate function, response generation).
- `minigpt.finetune.metrics`: the offline metric of chapter 7's test set (ROUGE-L, exact match).
- `minigpt.finetune.judge`: chapter 7.8's LLM judge, a client for Ollama and OpenAI-compatible servers.
- `minigpt.finetune.preference`: the chapter-7 bonus, direct preference optimisation (DPO) of an
  instruction-tuned GPT on chosen/rejected response pairs.

What the chapters share (a loss averaged over a loader, a training-curve plot) lives in
`minigpt.train` and is imported from there.
"""
