"""Tunedeck's engine: everything that is not drawing. Never imports Textual.

Heavy ML libraries (torch, transformers, peft, trl, datasets) are imported inside the functions
that need them, so that the TUI process can use the light parts of the engine for free.
"""

__version__ = "0.1.0"
