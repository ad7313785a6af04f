"""No compute on padding, and the fastest kernels the machine has — for the training worker.

Padding-free batching (TRL's ``padding_free``): the rows of a batch run back to back as one sequence
with ``position_ids`` restarting at 0 for each row, and no padding at all. It is exact only where the
attention keeps the rows apart: flash-attention's varlen kernels do, and transformers builds a
block-diagonal mask for SDPA and eager attention from the restarting ``position_ids`` — but only when
no KV cache is passed (TRL trains with ``use_cache=False``). A model whose attention ignores
``position_ids`` would let rows see each other. So before training the worker *checks* it on the model
itself: one row's logits must not change when the row before it in the pack changes. Where they do,
the worker pads instead and says why in the run's log.

The completion mask goes through unchanged: the collator concatenates ``labels`` (the encode() mask
turned into -100s) with the ids, and masks the first label of each row (which would otherwise be
predicted from the row before).

Exact is not always faster: engine.packing weighs packing against padding on the run's own lengths
(its reasons there), and the worker packs only where that is less work.
"""

from __future__ import annotations

import importlib.util

from .packing import ModelShape

PROBE_TOKENS = 24  # tokens of each probe row: enough to exercise attention, cheap on any model


def liger_available(device: str) -> bool:
    """Liger's fused Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) need a GPU."""
    return device == "cuda" and importlib.util.find_spec("liger_kernel") is not None


def padding_free_is_exact(model, rows: list[dict], device=None) -> tuple[bool, str]:
    """Check on ``model`` that rows packed together do not see each other: (exact?, why). ``device`` is
    where the trainer will run it: the model is moved there first, since on a GPU its kernels (Liger's
    Triton ones) cannot run on the CPU where the model was loaded."""
    import torch

    rows = [r["input_ids"][:PROBE_TOKENS] for r in rows if len(r["input_ids"]) >= 4][:2]
    if len(rows) < 2:
        return True, "nothing to check (fewer than two rows)"
    first, second = rows
    other = [(t + 1) % max(2, max(first) + 2) for t in first]  # a different row of the same length
    if device is not None and next(p for p in model.parameters()).device != torch.device(device):
        model.to(device)  # what the Trainer does next anyway
    device = next(p for p in model.parameters()).device

    def second_row_logits(before: list[int]):
        ids = torch.tensor([before + second], device=device)
        positions = torch.tensor([list(range(len(before))) + list(range(len(second)))], device=device)
        out = model(input_ids=ids, position_ids=positions, use_cache=False)
        return out.logits[0, len(before):].float()

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            a, b = second_row_logits(first), second_row_logits(other)
    finally:
        model.train(was_training)
    scale = float(a.abs().max()) or 1.0
    diff = float((a - b).abs().max()) / scale
    if diff > 1e-5:  # without a leak the second row is computed from the same numbers: no change at all
        return False, (f"a row's logits change by {diff:.1e} (relative) when the row before it changes, so this "
                       "model's attention does not keep packed rows apart")
    return True, f"rows packed together do not see each other (max relative change {diff:.1e})"


def model_shape(model, *, full: bool) -> ModelShape:
    """From a loaded model, for one the estimate does not know (LoRA-wrapped or quantised layers keep
    their in and out sizes)."""
    import torch

    matmul = sum(m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    config = model.config
    config = getattr(config, "get_text_config", lambda: config)()
    heads = getattr(config, "num_attention_heads", 0) or 0
    head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else 0)
    return ModelShape(matmul, heads * head_dim * (getattr(config, "num_hidden_layers", 0) or 0), full)


class LargestBatch:
    """Keeps the token lengths of the largest batch a trainer's collator builds (padded: rows x its longest
    row; padding-free: the rows back to back). A run's measured peak belongs to that batch, not to the
    worst one its data could make (the estimate shown before training): on an H200 the estimate for the
    worst batch was 1.6-4.4x the 30-step run's peak, the estimate for the batch it really saw 0.86-1.11x
    NVML's figure. Calibration compares like with like."""

    def __init__(self, trainer, *, packed: bool, lengths_of) -> None:
        self.lengths: list[int] = []
        self.tokens = 0
        collate = trainer.data_collator

        def record(rows):
            lengths = lengths_of(rows)
            if lengths:
                tokens = sum(lengths) if packed else len(lengths) * max(lengths)
                if tokens > self.tokens:
                    self.tokens, self.lengths = tokens, lengths
            return collate(rows)

        trainer.data_collator = record  # the train dataloader reads it when train() starts

