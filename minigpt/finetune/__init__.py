"""minigpt.finetune: fine-tuning a pretrained GPT, following the book's chapters 6 and 7 and the
chapter-7 bonus on preference tuning (`preference.py`, DPO)."""
