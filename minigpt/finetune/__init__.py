"""Fine-tuning a pretrained GPT (book chapters 6 and 7).

- `minigpt.finetune.instruction`: chapter 7, instruction fine-tuning (Alpaca-style prompts, the
  padding collate function, response generation).
- `minigpt.finetune.metrics`: the offline metric of chapter 7's test set (ROUGE-L, exact match).
- `minigpt.finetune.judge`: chapter 7.8's LLM judge, a client for Ollama and OpenAI-compatible servers.
"""
