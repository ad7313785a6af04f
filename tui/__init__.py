"""Tunedeck's Textual app. Never imports torch, transformers, peft, trl or datasets: work that
needs them runs in the worker, the chat process or a short-lived helper process."""
