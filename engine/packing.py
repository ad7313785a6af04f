"""Whether packing a batch's rows pays: the cost model behind padding-free batching (engine.batching).

Padding-free batching is exact (the worker checks it), but exact is not always faster. Without a varlen
attention kernel (flash-attention) the block-diagonal mask is a dense one: a packed batch of rows
l1..lb attends over (l1+...+lb)^2 token pairs where the padded batch attends over b*max(l)^2. On nearly
uniform rows that costs more than the padding saves (measured on the demo, 2 CPU cores: 0.92x the
padded tokens/s). So packing is chosen only where, on the run's own token lengths and the model's
shape, it is less arithmetic than padding. The estimates (engine.estimate) and the worker ask the same
question here. No ML library is imported: the TUI's estimates use it.
"""

from __future__ import annotations

import importlib.util
import random
from dataclasses import dataclass


def attention_implementation(device: str) -> str:
    """The attention kernel to load the model with: flash-attention 2 where it is installed on a
    GPU (varlen: exact and fast padding-free), else PyTorch's SDPA."""
    if device == "cuda" and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


VARLEN_ATTENTION = ("flash_attention_2", "flash_attention_3")  # packed rows cost the sum of their squares


@dataclass(frozen=True)
class ModelShape:
    """What a training step's arithmetic depends on: the weights every token is multiplied by (the
    matmuls, the output head included; embeddings are a lookup), the attention width summed over the
    layers (heads x head size), and whether the weights themselves get gradients (full fine-tuning)."""

    matmul_params: int
    attention_width: int
    full: bool = False

    def token_flops(self) -> float:
        # forward, the gradient to the activations, and (full fine-tuning) the weights' own gradient
        return 2.0 * self.matmul_params * (2 + self.full)

    def pair_flops(self) -> float:
        # scores and weighted sum: 4 flops per width unit and token pair forward, twice that backward
        return 12.0 * self.attention_width

    @classmethod
    def of_architecture(cls, arch, *, full: bool) -> "ModelShape":
        """From the estimate's Architecture (engine.estimate): no weights needed."""
        return cls(arch.linear_weight_params + arch.vocab * arch.hidden, arch.q_dim * arch.layers, full)


SPREAD_KEPT = 2000  # lengths enough to draw a data set's batches from: the cost model's sample


def even_sample(lengths: list[int], k: int = SPREAD_KEPT) -> list[int]:
    """``k`` lengths spread evenly over the sorted ``lengths`` (all of them when there are fewer):
    the same distribution, in a size the cost model draws batches from quickly."""
    ordered = sorted(lengths)
    n = len(ordered)
    if n <= k:
        return ordered
    return [ordered[(2 * i + 1) * n // (2 * k)] for i in range(k)]


def batching_costs(lengths: list[int], batch_size: int, shape: ModelShape, *, varlen: bool,
                   group_by_length: bool = False, epochs: int = 3, seed: int = 0) -> tuple[float, float]:
    """(padded, padding-free): the mean FLOPs of a training step of ``batch_size`` rows drawn from rows of
    these token ``lengths``, shuffled as the trainer does (``group_by_length``: similar lengths together,
    as transformers' LengthGroupedSampler batches them). Padded, every row is as long as the batch's
    longest; padding-free, the rows run as one sequence, whose attention is the sum of the rows' squares
    with a varlen kernel and the square of their sum without one."""
    rng = random.Random(seed)
    lengths = even_sample([n for n in lengths if n > 0])
    if not lengths or batch_size < 1:
        return 0.0, 0.0
    padded = packed = 0.0
    batches = 0
    for _ in range(epochs):
        order = lengths[:]
        rng.shuffle(order)
        if group_by_length:  # megabatches of 50 batches, each sorted longest first
            mega = 50 * batch_size
            order = [n for i in range(0, len(order), mega) for n in sorted(order[i:i + mega], reverse=True)]
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            total, longest = sum(batch), max(batch)
            padded += len(batch) * longest * shape.token_flops() + len(batch) * longest ** 2 * shape.pair_flops()
            pairs = sum(n * n for n in batch) if varlen else total * total
            packed += total * shape.token_flops() + pairs * shape.pair_flops()
            batches += 1
    return padded / batches, packed / batches


def padding_free_pays(lengths: list[int], batch_size: int, shape: ModelShape, attention: str, *,
                      group_by_length: bool = False) -> tuple[bool, str]:
    """(pack?, why): whether padding-free batching does less arithmetic than padding on this data."""
    if batch_size <= 1:
        return False, "one row a batch has no padding to save"
    varlen = attention in VARLEN_ATTENTION
    padded, packed = batching_costs(lengths, batch_size, shape, varlen=varlen, group_by_length=group_by_length)
    figures = f"about {_flops(packed)} a batch packed against {_flops(padded)} padded, on this data's token lengths"
    if packed < padded:
        return True, figures
    kernel = "" if varlen else (f" (attention {attention}: without a varlen kernel a packed batch attends across "
                                "all its rows)")
    return False, f"packing would cost more than the padding it saves{kernel}: {figures}"


def _flops(n: float) -> str:
    for unit, scale in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} FLOP"
