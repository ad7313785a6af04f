"""How many parameters a model has and how much memory fine-tuning it needs, before anything is
downloaded: the model is built from its ``config.json`` on PyTorch's ``meta`` device (shapes, no
weights), the way ``accelerate estimate-memory`` does, so every count is exact.

Two layers:

* ``engine.model_shapes.inspect_model(config)`` needs transformers (engine / CLI only). It returns
  an ``Architecture``: plain numbers (parameter counts, the linear layers of one decoder block,
  norms, vocabulary) that serialise to JSON.
* ``estimate(arch, plan)``, ``judge_fit`` and ``ways_to_fit`` are plain arithmetic on those numbers;
  they import nothing heavy, so the TUI re-computes them for any method or setting without a child
  process.

The recipe this estimates is the one ``engine/worker.py`` trains with (TRL ``SFTTrainer``)
--------------------------------------------------------------------------------------------------
GPU (bf16 where supported, else fp16 — both 2 bytes):

* full  — mixed precision with fp32 master weights: weights fp32, autocast to bf16 for matmuls,
  fp32 gradients, AdamW with two fp32 states.  4 + 4 + 8 = 16 bytes per parameter (the classic
  mixed-precision Adam figure of ZeRO, Rajbhandari et al. 2020, arXiv:1910.02054 §3.1), plus the
  bf16 copies of every linear weight that autocast makes in the forward pass and that the backward
  pass keeps (2 bytes per linear parameter, counted under activations).  ``precision="bf16"``
  instead estimates "pure bf16" (weights, gradients and AdamW states all bf16: 2 + 2 + 4 = 8 bytes
  per parameter).
* lora  — frozen base in bf16 (2 B/param); adapters fp32 (PEFT's default ``autocast_adapter_dtype``):
  4 B weight + 4 B gradient + 8 B AdamW per trainable parameter.
* qlora — linear weights of the decoder blocks in NF4 with double quantisation: 4 bits + 8-bit block
  scales per 64 weights + an fp32 scale per 256 blocks = 4 + 8/64 + 32/(64*256) = 4.127 bits per
  weight (Dettmers et al. 2023, QLoRA, arXiv:2305.14314 §3, "Double Quantization").  Everything
  else (embeddings, lm_head, norms) is cast to fp32 by ``peft.prepare_model_for_kbit_training``,
  which the worker calls.  TRL casts the adapters of a quantised model to bf16, so each trainable
  parameter costs 2 + 2 + 4 = 8 bytes.  The 4-bit weight of one linear layer is de-quantised to
  bf16 while it is used (one layer at a time).

CPU (``device="cpu"``): everything fp32, no autocast (the worker trains this way on a CPU).

Optimizer: AdamW (``adamw_torch_fused``, the transformers default on torch >= 2.8; no full-size
temporaries); ``optimizer="adamw-8bit"`` (bitsandbytes) keeps both states in 8 bits: 2 B/param.

Activations (per token, per decoder layer; these are the tensors autograd saves for the backward
pass, counted op by op for a Llama-style block and checked against ``saved_tensors_hooks`` tallies —
see ``bench/bench_estimate.py``; in the spirit of Korthikanti et al. 2022, arXiv:2205.05198 §4).
``h`` hidden size, ``q``/``kv`` attention widths (heads x head_dim), ``I`` MLP width, ``n`` heads,
``c`` compute bytes (2 under autocast, 4 on a CPU), ``f`` = 4 (RMSNorm works in fp32), ``s``
sequence length:

  norms        every norm saves its fp32 input: f*h each; full training also keeps the normed
               value for the norm weight's gradient: + (weight bytes)*h each
  attention    SDPA/flash saves q, k, v, output and a fp32 log-sum-exp: (2q + 2kv)*c + 4n;
               with padding (batch > 1) transformers repeats k and v to q's width and passes a
               mask the kernel keeps per layer: k, v -> q each, + s*c
  MLP (gated)  gate, activation and up outputs: 3*I*c; + the down projection's input (I*c) when
               its weight is trained
  linear inputs (full) q/k/v share one input and gate/up another (h*c each); under autocast each
               layer casts its own copy (3 + 2 copies)
  LoRA target  dropout mask (1 B on GPU, 4 B on CPU) + the adapter's saved input (c) per input
               feature, + r*c for the low-rank output
  eager attn   + n*s*(4 + c): the fp32 softmax and its half-precision copy (instead of SDPA's lse)

Gradient checkpointing keeps only each layer's input (h * weight bytes) and recomputes one layer
at a time in the backward pass: L*h*w + one layer's activations.

The LM head: TRL computes the loss in tiles (``fused_lm_head``) instead of materialising the
(tokens x vocabulary) logits: one tile of min(tokens, 4096) x min(vocab, 32768) in the compute
dtype on a GPU (the Triton kernel works in place); on a CPU the pure-torch tile code keeps about
ten fp32 temporaries of the tile alive in the backward pass (measured: 10.4 tiles, 42 bytes per
tile element).

Preference tuning (``objective``: dpo | kto; TRL ``DPOTrainer`` / ``KTOTrainer``)
---------------------------------------------------------------------------------
DPO runs the chosen and the rejected answers of a batch in one forward pass: ``batch_size`` pairs
are 2 x batch_size sequences, padded to the longest of them, so the activations kept for the
backward pass are those of twice the rows. Its reference pass (the same base with the adapter
disabled, or the frozen model for full fine-tuning) runs under ``no_grad``: it keeps no activation
for the backward pass, only one layer's working set while it runs, on top of the policy's
activations (it runs between the policy's forward and backward); its logits tiles are freed tile by
tile. KTO runs ``batch_size`` answers with gradients and, without gradients, the KL sequences (each
prompt with another row's answer) through the model and the reference. Measured (CPU, demo model,
LoRA): peak / estimate 0.97-1.02 for DPO; on an H200 (SmolLM2-135M shape, bf16) torch's allocator
peak was 0.70-0.87 of the estimate and NVML's figure for the process (CUDA context included)
1.03-1.10. Weights: with LoRA/QLoRA no second
copy (the reference is the adapter disabled); started from an earlier adapter (``init_from``) TRL
keeps a frozen copy of that adapter (adapter-sized); full fine-tuning loads a second, frozen copy of
the model in its own dtype (fp32 here, as the worker loads it). Trainable parameters are those of
the method, as for SFT.

GRPO (``objective: grpo``; TRL ``GRPOTrainer``)
-----------------------------------------------
A GRPO step has two phases that are not alive at the same time. Generation, under ``no_grad``:
the policy samples ``batch_size x gradient_accumulation_steps`` answers (TRL's generation batch)
with the KV cache: 2 (keys and values) x layers x kv width x compute bytes per token, for every row
at its full length (prompt + ``max_completion_length``; ``seq_len`` of the plan is that total, as
the worker passes it), plus one layer's working set of the prompt pass and the last position's
logits. Training: ``batch_size`` sequences of prompt + answer through the policy with gradients,
exactly as SFT's rows (TRL scores the answer tokens with the same tiled LM head), so the
activations are SFT's for those rows. With ``beta`` > 0 the reference's log-probabilities are
computed under ``no_grad`` (the adapter disabled; for full fine-tuning a second frozen copy of the
model), as for DPO; with beta 0 (TRL's default) there is no reference pass. So

  peak = weights + optimizer + max(generation, training's forward/backward, optimizer step)

An estimate from the recipe, not yet checked against many runs: bench/bench_grpo_demo.py prints the
worker's measured peak beside it on the demo.

Peak and breakdown
------------------
Gradients and activations are not alive at the same time: activations are freed layer by layer as
gradients appear, and gradients are freed (``set_to_none``) after the optimizer step.  So

  peak = weights + optimizer + max(activations + gradients already alive in the backward pass,
                                   all gradients at the optimizer step) + overhead

``total`` is that peak; the parts are reported at their own size, so their sum can exceed it.
Overhead: on a GPU, the CUDA context and cuBLAS workspaces (~0.5 GiB with lazy module loading;
see https://pytorch.org/docs/stable/notes/cuda.html#memory-management) plus 5 % for the caching
allocator's fragmentation; on a CPU, the worker's Trainer and dataset (~0.1 GiB measured) and the
rest of the process heap: 0.3 GiB plus 5 %.

How close this is: ``bench/bench_estimate.py`` runs real training steps through the worker on the
demo model (CPU) and compares peak RSS: the activation term matches autograd's saved tensors to
0.3 %, the whole peak is within -16 % .. +6 %.  GPU figures could not be measured here (no GPU);
they agree with LLaMA-Factory's and Unsloth's published tables where the recipes match.
What other tools publish for comparison lives in ``bench/bench_estimate.py``'s header.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .errors import ConfigError, TunedeckError

GIB = 1024**3
METHODS = ("full", "lora", "qlora")
OBJECTIVES = ("sft", "dpo", "kto", "grpo")
ALL_LINEAR = "all-linear"

NF4_BYTES_PER_WEIGHT = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4.127 bits: QLoRA §3 double quantisation
ADAM8_BYTES_PER_PARAM = 2 + 2 * 4 / 2048  # two uint8 states + an fp32 absmax per 2048-block each
CUDA_CONTEXT_BYTES = int(0.5 * GIB)
CPU_PROCESS_BYTES = int(0.3 * GIB)
FRAGMENTATION = 0.05
FIT_MARGIN = 0.85  # fits below 85 % of free memory; "tight" up to 100 %
LOGIT_TOKEN_TILE = 4096  # trl.kernels.chunked_logprob.TOKEN_CHUNK_SIZE
LOGIT_VOCAB_TILE = 32768  # trl.trainer.utils._CHUNKED_LOGPROB_CHUNK_SIZE
CPU_LOGIT_TILE_BYTES = 42  # per tile element on a CPU: ~10.4 fp32 tiles alive in the backward (measured)

# Roles of the linear layers of a decoder block, by the last part of their name. They decide which
# inputs are shared (q/k/v read the same normed hidden state) and what the MLP keeps.
ROLES = {
    "q_proj": "attn_in", "k_proj": "attn_in", "v_proj": "attn_in", "qkv_proj": "attn_in",
    "query_key_value": "attn_in", "c_attn": "attn_in", "Wqkv": "attn_in", "query": "attn_in",
    "key": "attn_in", "value": "attn_in",
    "o_proj": "attn_out", "out_proj": "attn_out", "dense": "attn_out", "wo": "attn_out",
    "gate_proj": "mlp_in", "up_proj": "mlp_in", "gate_up_proj": "mlp_in", "w1": "mlp_in", "w3": "mlp_in",
    "fc1": "mlp_in", "c_fc": "mlp_in", "dense_h_to_4h": "mlp_in",
    "down_proj": "mlp_out", "w2": "mlp_out", "fc2": "mlp_out", "dense_4h_to_h": "mlp_out",
}
GATED = {"gate_proj", "gate_up_proj", "w1"}


# --- the architecture ---------------------------------------------------------------------------
@dataclass
class Linear:
    name: str  # path inside a decoder layer, e.g. "self_attn.q_proj"
    inp: int
    out: int
    bias: bool = False

    @property
    def role(self) -> str | None:
        return ROLES.get(self.name.rsplit(".", 1)[-1])

    @property
    def params(self) -> int:
        return self.inp * self.out + (self.out if self.bias else 0)


@dataclass
class Architecture:
    """What the estimate needs to know about a model, counted on the meta device."""

    name: str
    model_type: str
    model_class: str
    total_params: int
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied_embeddings: bool
    layer_linears: list[Linear]  # one decoder layer (all layers have the same shapes)
    layer_norm_dims: list[int]  # the norms of one decoder layer
    other_linears: list[Linear] = field(default_factory=list)  # linears outside the layers, not lm_head
    embedding_params: int = 0
    lm_head_params: int = 0  # 0 when tied to the embeddings
    known_layout: bool = True  # False: layer roles were guessed (activations are approximate)

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def gated_mlp(self) -> bool:
        return any(lin.name.rsplit(".", 1)[-1] in GATED for lin in self.layer_linears)

    @property
    def linear_weight_params(self) -> int:
        """Weights of the linears in the decoder blocks (what QLoRA stores in 4 bits)."""
        per_layer = sum(lin.inp * lin.out for lin in self.layer_linears)
        return per_layer * self.layers + sum(lin.inp * lin.out for lin in self.other_linears)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Architecture":
        d = dict(d)
        d["layer_linears"] = [Linear(**x) for x in d.get("layer_linears", [])]
        d["other_linears"] = [Linear(**x) for x in d.get("other_linears", [])]
        return cls(**d)


# --- LoRA targets -------------------------------------------------------------------------------
def parse_targets(targets: str | list[str] | None) -> str | list[str]:
    if targets is None or targets == "" or targets == ALL_LINEAR:
        return ALL_LINEAR
    if isinstance(targets, str):
        targets = [t.strip() for t in targets.split(",") if t.strip()]
    return [str(t) for t in targets]


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)  # PEFT's suffix rule


def lora_targets(arch: Architecture, targets: str | list[str] | None) -> list[Linear]:
    """The linear layers of one decoder layer that LoRA adapts (``all-linear``: every linear but lm_head)."""
    targets = parse_targets(targets)
    if targets == ALL_LINEAR:
        return list(arch.layer_linears)
    chosen = [lin for lin in arch.layer_linears if any(_matches(lin.name, t) for t in targets)]
    unmatched = [t for t in targets
                 if not any(_matches(lin.name, t) for lin in arch.layer_linears + arch.other_linears)]
    if unmatched or not chosen:
        names = sorted({lin.name.rsplit(".", 1)[-1] for lin in arch.layer_linears})
        raise ConfigError(
            f"LoRA target {', '.join(unmatched or targets)!s} matches no layer of {arch.name} "
            f"({arch.model_type}); its linear layers are {', '.join(names)} — use one of those or all-linear."
        )
    return chosen


def lora_params(arch: Architecture, r: int, targets: str | list[str] | None) -> int:
    """Trainable LoRA parameters: r x (in + out) per adapted linear layer (A is r x in, B is out x r)."""
    per_layer = sum(r * (lin.inp + lin.out) for lin in lora_targets(arch, targets))
    extra = 0
    parsed = parse_targets(targets)
    for lin in arch.other_linears:
        if parsed == ALL_LINEAR or any(_matches(lin.name, t) for t in parsed):
            extra += r * (lin.inp + lin.out)
    return per_layer * arch.layers + extra


# --- the plan and the estimate ------------------------------------------------------------------
@dataclass
class Plan:
    method: str = "lora"
    lora_r: int = 16
    lora_targets: str | list[str] = ALL_LINEAR
    lora_dropout: float = 0.05
    seq_len: int = 1024
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool | None = None  # None: the worker's default for the method
    device: str = "cuda"  # "cuda" (estimate for a GPU) | "cpu" (training on this machine's CPU)
    precision: str = "mixed"  # full fine-tuning only: "mixed" (fp32 master weights) | "bf16" (pure)
    optimizer: str = "adamw"  # "adamw" | "adamw-8bit"
    attention: str = "sdpa"  # "sdpa" | "eager"
    packed: bool = False  # padding-free: one sequence of seq_len tokens made of several rows, with a mask
    objective: str = "sft"  # "sft" | "dpo" (batch_size pairs: 2 x batch_size sequences) | "kto" | "grpo"
    reference_adapter: bool = False  # DPO/KTO from an earlier adapter (init_from): TRL keeps a frozen copy of it
    reference: bool = True  # DPO/KTO/GRPO: a reference pass (GRPO with beta 0 has none)

    @property
    def generation_rows(self) -> int:
        """GRPO: answers sampled in one generate call (TRL's generation batch: a step's micro-batches)."""
        return self.batch_size * self.gradient_accumulation_steps if self.objective == "grpo" else 0

    @property
    def sequences(self) -> int:
        """Sequences in one forward pass with gradients: DPO's pairs count twice."""
        return self.batch_size * (2 if self.objective == "dpo" else 1)

    def resolved(self) -> "Plan":
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}.")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}.")
        if self.objective != "sft" and self.packed:
            raise ConfigError(f"{self.objective} batches are padded (TRL has no padding-free path for it); "
                              "estimate without --padding-free.")
        for key in ("seq_len", "batch_size", "gradient_accumulation_steps", "lora_r"):
            if int(getattr(self, key)) < 1:
                raise ConfigError(f"{key.replace('_', '-')} must be at least 1, got {getattr(self, key)}.")
        if self.device not in ("cuda", "cpu"):
            raise ConfigError(f"device must be cuda or cpu, got {self.device!r}.")
        if self.precision not in ("mixed", "bf16"):
            raise ConfigError(f"precision must be mixed or bf16, got {self.precision!r}.")
        if self.optimizer not in ("adamw", "adamw-8bit"):
            raise ConfigError(f"optimizer must be adamw or adamw-8bit, got {self.optimizer!r}.")
        if self.attention not in ("sdpa", "eager"):
            raise ConfigError(f"attention must be sdpa or eager, got {self.attention!r}.")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora dropout must be in [0, 1), got {self.lora_dropout}.")
        gc = self.gradient_checkpointing
        if gc is None:
            from .config import RunConfig

            gc = RunConfig.defaults_for(self.method).gradient_checkpointing
        return replace(self, gradient_checkpointing=bool(gc), lora_targets=parse_targets(self.lora_targets))


@dataclass(frozen=True)
class TokenLengths:
    """A data set's token lengths as the estimates use them: its longest rows (the largest batch the run
    will see) and an even sample of all of them (the spread, which decides whether packing pays)."""

    longest: tuple[int, ...]
    spread: tuple[int, ...]

    def __bool__(self) -> bool:  # measured, and something to size from
        return bool(self.longest)

    @classmethod
    def of(cls, lengths) -> "TokenLengths | None":
        """From every row's lengths (a list), or as given (TokenLengths or None)."""
        if lengths is None or isinstance(lengths, TokenLengths):
            return lengths or None
        from .packing import even_sample

        return cls(tuple(sorted(lengths, reverse=True)[:LONGEST_KEPT]), tuple(even_sample(lengths))) if lengths else None

    @classmethod
    def from_stats(cls, stats: dict) -> "TokenLengths":
        """From ``tunedeck data stats``' figures (``longest`` and ``spread``; empty, and false, without)."""
        longest = stats.get("longest") or []
        return cls(tuple(longest), tuple(stats.get("spread") or longest))


LONGEST_KEPT = 256  # enough for any batch size people train with


def longest_batch(config, lengths, *, arch: Architecture | None = None, shape=None,
                  device: str = "cpu") -> tuple[int, int, bool, str]:
    """(rows, tokens per row, packed, why) of the largest batch the run will really see. From the data's
    token ``lengths`` (a list of every row's, or TokenLengths) when known: padded, the longest row times
    batch_size; padding-free, the batch_size longest rows run as one sequence. Without lengths, every
    row is assumed max_length long. Padding-free only where the config allows it and, judged on the data's
    spread and the model's shape (``arch``, or an engine.packing.ModelShape), it does less work than
    padding: the worker's own rule."""
    from .packing import ModelShape, attention_implementation, padding_free_pays

    rows = config.batch_size
    lengths = TokenLengths.of(lengths)
    longest = sorted((min(n, config.max_length) for n in lengths.longest), reverse=True)[:rows] if lengths else []
    if not longest:
        longest = [config.max_length] * rows
    packed, why = False, "padding_free is off"
    if getattr(config, "objective", "sft") != "sft":
        why = "this objective's batches are padded"
    elif getattr(config, "padding_free", False):
        if lengths is None:
            why = "rows all max_length long have no padding to save"
        elif arch is None and shape is None:  # no shape to weigh it with: as configured
            packed, why = rows > 1, "padding_free is on"
        else:
            shape = shape or ModelShape.of_architecture(arch, full=getattr(config, "method", "lora") == "full")
            packed, why = padding_free_pays(
                [min(n, config.max_length) for n in lengths.spread], rows, shape,
                attention_implementation(device), group_by_length=bool(getattr(config, "group_by_length", False)))
    if packed:
        return 1, sum(longest), True, why
    return rows, longest[0], False, why


def plan_for(config, *, device: str, lengths=None, arch: Architecture | None = None) -> Plan:
    """The Plan a RunConfig trains with on ``device`` ("cuda" | "cpu"), for the largest batch of data
    with these token ``lengths`` (None: every row max_length long), packed where that pays for ``arch``."""
    lora = config.lora
    rows, seq_len, packed, _ = longest_batch(config, lengths, arch=arch, device=device)
    objective = getattr(config, "objective", "sft")
    # TRL disables dropout (LoRA's too) for DPO/KTO: no dropout masks are kept (GRPO keeps it)
    dropout = lora.dropout if objective in ("sft", "grpo") else 0.0
    reference = objective != "grpo" or float(getattr(config, "beta", 0) or 0) > 0
    return Plan(method=config.method, lora_r=lora.r, lora_targets=lora.targets, lora_dropout=dropout,
                seq_len=seq_len, batch_size=rows, gradient_accumulation_steps=config.gradient_accumulation_steps,
                gradient_checkpointing=config.gradient_checkpointing, device=device, packed=packed,
                objective=objective, reference=reference,
                reference_adapter=objective != "sft" and reference and bool(getattr(config, "init_from", None))
                ).resolved()


def calibration_method(method: str, objective: str = "sft") -> str:
    """The key runs of this kind calibrate estimates under: the method, with the objective when not SFT."""
    return method if objective == "sft" else f"{objective}-{method}"


@dataclass
class Memory:
    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    total: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Estimate:
    model: str
    method: str
    total_params: int
    trainable_params: int
    memory: Memory
    peak_phase: str  # "forward/backward" | "optimizer step" | "generation" (GRPO)
    plan: Plan
    notes: list[str] = field(default_factory=list)

    @property
    def trainable_fraction(self) -> float:
        return self.trainable_params / self.total_params if self.total_params else 0.0

    def to_dict(self) -> dict:
        plan = asdict(self.plan)
        return {
            "model": self.model,
            "method": self.method,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "trainable_percent": round(100 * self.trainable_fraction, 4),
            "memory_bytes": self.memory.to_dict(),
            "peak_phase": self.peak_phase,
            "settings": plan,
            "notes": list(self.notes),
        }


def _activation_bytes(arch: Architecture, p: Plan, *, c: int, w: int, base_trained: bool,
                      autocast_copies: bool, lora: list[Linear], adapter_bytes: int) -> tuple[int, int]:
    """(bytes saved per token by one decoder layer, the same with everything that is not per-layer)."""
    f = 4
    h, q, kv, inter = arch.hidden, arch.q_dim, arch.kv_dim, arch.intermediate
    s = p.seq_len
    # norms: fp32 input, + normed value when the norm weight trains
    per = sum(f * d + (w * d if base_trained else 0) for d in arch.layer_norm_dims)
    # attention core
    padded = p.batch_size > 1 or p.packed  # a mask is passed (padding, or the rows of a pack kept apart)
    kv_saved = q if padded else kv
    per += (2 * q + 2 * kv_saved) * c
    if p.attention == "eager":
        per += arch.heads * s * (4 + (c if c != 4 else 0))
    else:
        per += 4 * arch.heads
    if padded:
        per += s * c  # the padding mask, converted per layer
    # MLP activations
    per += (3 if arch.gated_mlp else 2) * inter * c
    # inputs of trained linear layers
    if base_trained:
        groups: dict[str, list[Linear]] = {}
        for lin in arch.layer_linears:
            groups.setdefault(lin.role or lin.name, []).append(lin)
        for role, lins in groups.items():
            if role == "attn_out":
                continue  # reads the attention output, already saved by the attention kernel
            copies = len(lins) if (autocast_copies or role not in ("attn_in", "mlp_in")) else 1
            per += copies * lins[0].inp * c
    # LoRA adapters
    lora_c = c if p.device == "cuda" else adapter_bytes
    mask = 1 if p.device == "cuda" else lora_c
    for lin in lora:
        per += (mask + lora_c) * lin.inp if p.lora_dropout > 0 else lora_c * lin.inp
        per += p.lora_r * lora_c
    # outside the layers: final norm, the LM head's saved hidden state and its fp32 gradient, stats
    head = f * h + (w * h if base_trained else 0) + w * h + 4 * h + 40
    return per, head


def estimate(arch: Architecture, plan: Plan | None = None) -> Estimate:
    """Memory for one training step of ``plan`` on ``arch`` (pure arithmetic; see the module docstring)."""
    p = (plan or Plan()).resolved()
    gpu = p.device == "cuda"
    n = arch.total_params
    notes: list[str] = []
    lora = lora_targets(arch, p.lora_targets) if p.method in ("lora", "qlora") else []

    if p.method == "full":
        trainable = n
        pure = p.precision == "bf16" and gpu
        w = 2 if pure else 4  # weight bytes
        g = w
        state = w
        c = 2 if gpu else 4
        weights = n * w
        casts = arch.linear_weight_params * 2 if (gpu and not pure) else 0
        base_trained, autocast_copies, adapter_bytes = True, gpu and not pure, w
        if gpu:
            notes.append("full fine-tuning in pure bf16 (weights, gradients and AdamW states in bf16)"
                         if pure else "full fine-tuning with fp32 master weights and bf16 autocast "
                         "(mixed precision)")
    else:
        trainable = lora_params(arch, p.lora_r, p.lora_targets)
        c = 2 if gpu else 4
        if p.method == "lora":
            w = 2 if gpu else 4
            weights = n * w
            adapter_bytes = 4  # PEFT keeps adapters fp32
        else:
            quantised = arch.linear_weight_params
            w = 4  # prepare_model_for_kbit_training casts everything not quantised to fp32
            weights = int(quantised * NF4_BYTES_PER_WEIGHT) + (n - quantised) * 4
            adapter_bytes = 2  # TRL casts the adapters of a quantised model to bf16
            notes.append("QLoRA: NF4 + double quantisation for the decoder's linear layers; embeddings, "
                         "lm_head and norms in fp32 (prepare_model_for_kbit_training)")
        weights += trainable * adapter_bytes
        g = state = adapter_bytes
        casts = 0
        base_trained, autocast_copies = False, False

    rows = replace(p, batch_size=p.sequences)  # DPO: chosen and rejected in one forward
    per_layer, head = _activation_bytes(arch, rows, c=c, w=w, base_trained=base_trained,
                                        autocast_copies=autocast_copies, lora=lora,
                                        adapter_bytes=adapter_bytes)
    tokens = p.sequences * p.seq_len
    if p.gradient_checkpointing:
        layer_acts = tokens * (arch.layers * arch.hidden * w + per_layer)
    else:
        layer_acts = tokens * arch.layers * per_layer
    tile = min(tokens, LOGIT_TOKEN_TILE) * min(arch.vocab, LOGIT_VOCAB_TILE)
    logits = tile * (c if gpu else CPU_LOGIT_TILE_BYTES)
    transient = 0
    if p.method == "qlora":
        transient = max((lin.inp * lin.out for lin in arch.layer_linears), default=0) * (2 if gpu else 4)
    if p.objective != "sft" and p.reference:
        # the reference pass (and KTO's KL pass) under no_grad, while the policy's activations wait for
        # the backward: one layer's working set at a time, nothing kept (its logits tiles are freed tile by
        # tile without autograd; measured on the demo: the DPO peak is the policy's, within 3 %)
        transient += tokens * per_layer
        if p.method == "full":
            ref = n * w  # TRL loads the reference in the policy's dtype
            weights += ref
            notes.append(f"{p.objective.upper()} with full fine-tuning keeps a second, frozen copy of the model as "
                         f"the reference ({gib(ref)})")
        elif p.reference_adapter:
            weights += trainable * adapter_bytes
            notes.append(f"{p.objective.upper()} from an earlier adapter: TRL keeps a frozen copy of it as the "
                         "reference (adapter-sized)")
        else:
            notes.append(f"{p.objective.upper()} reference: the same weights with the adapter disabled "
                         "(no second copy)")
        if p.objective == "dpo":
            notes.append(f"DPO: {p.batch_size} pairs are {p.sequences} sequences in one forward pass")
    elif p.objective == "grpo":
        notes.append("GRPO with beta 0: no reference model, no reference pass")
    activations = layer_acts + tokens * head + logits + transient + casts
    generation = 0
    if p.objective == "grpo":
        # sampling, under no_grad, before the training pass: the KV cache of every sampled row at its full
        # length, one layer's working set of the prompt pass, the last position's logits (fp32) and a copy
        gen_tokens = p.generation_rows * p.seq_len
        kv_cache = gen_tokens * arch.layers * 2 * arch.kv_dim * c
        generation = kv_cache + gen_tokens * per_layer + p.generation_rows * arch.vocab * 4 * 2
        notes.append(f"GRPO: sampling {p.generation_rows} answers keeps a KV cache of {gib(kv_cache)}; training "
                     f"then runs {p.batch_size} sequences of prompt + answer ({p.seq_len} tokens) with gradients")

    gradients = trainable * g
    if p.optimizer == "adamw-8bit":
        optimizer = int(trainable * ADAM8_BYTES_PER_PARAM)
    else:
        optimizer = trainable * 2 * state

    # gradients alive during the backward pass: the LM head's (full), or all of them when
    # gradient accumulation keeps them between micro-batches
    head_grad = (arch.vocab * arch.hidden * g) if p.method == "full" else 0
    early = gradients if p.gradient_accumulation_steps > 1 else head_grad
    fb = activations + early
    step = gradients + (arch.vocab * arch.hidden * g if (p.method == "full" and arch.tied_embeddings) else 0)
    phase = "forward/backward" if fb >= step else "optimizer step"
    if generation > max(fb, step):
        phase = "generation"
    core = weights + optimizer + max(fb, step, generation)
    overhead = (CUDA_CONTEXT_BYTES if gpu else CPU_PROCESS_BYTES) + int(FRAGMENTATION * core)
    memory = Memory(int(weights), int(gradients), int(optimizer), int(activations), int(overhead),
                    int(core + overhead))
    if not arch.known_layout:
        notes.append(f"activations are approximate: the layer layout of {arch.model_type} is not one "
                     "Tunedeck knows")
    return Estimate(arch.name, p.method, n, int(trainable), memory, phase, p, notes)


# --- fit against GPUs ---------------------------------------------------------------------------
@dataclass
class Fit:
    verdict: str  # "fits" | "tight" | "no" | "no-gpu"
    reason: str
    gpu: dict | None = None  # the GPU judged against: {"index", "name", "memory_total", "memory_free"}
    gpus: list[dict] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        """True (fits or tight), False (does not fit), None (no GPU to judge against)."""
        return None if self.verdict == "no-gpu" else self.verdict != "no"

    def to_dict(self) -> dict:
        return {**asdict(self), "fits": self.fits, "message": self.reason}


def gib(n: float | None, unit: str = " GiB") -> str:
    """Bytes in GiB with one decimal: "12.3 GiB" ("12.3" with ``unit=""``; "?" when unknown)."""
    return ("?" if n is None else f"{n / GIB:.1f}") + unit


def judge_fit(total: int, gpus: list | None, no_gpu_reason: str | None = None) -> Fit:
    """fits / tight / no against the GPU with the most free memory; "no-gpu" with the reason when none.

    ``gpus``: objects or dicts with ``index``, ``name``, ``memory_total`` and ``memory_used`` (bytes).
    """
    rows = []
    for g in gpus or []:
        get = g.get if isinstance(g, dict) else (lambda k, _g=g: getattr(_g, k))
        total_mem, used = int(get("memory_total")), int(get("memory_used") or 0)
        # "where": how to name a memory that is not an NVIDIA GPU here (RAM, a planned GPU)
        where = g.get("where") if isinstance(g, dict) else None
        rows.append({"index": int(get("index")), "name": str(get("name")), "memory_total": total_mem,
                     "memory_free": max(0, total_mem - used), "where": where or f"GPU {int(get('index'))}"})
    if not rows:
        reason = no_gpu_reason or "no NVIDIA GPU found"
        return Fit("no-gpu", f"{reason} — CPU only; needs {gib(total)} of GPU memory", None, [])
    best = max(rows, key=lambda r: r["memory_free"])
    free = best["memory_free"]
    named = f"{best['name']}, " if best["where"].startswith("GPU") else ""
    where = f"{best['where']} ({named}{gib(free)} free of {gib(best['memory_total'])})"
    if total <= FIT_MARGIN * free:
        verdict, reason = "fits", f"needs {gib(total)}; fits on {where}"
    elif total <= free:
        verdict, reason = "tight", f"needs {gib(total)}; only just fits on {where} — an OOM is possible"
    else:
        verdict, reason = "no", f"needs {gib(total)}; does not fit on {where}"
    return Fit(verdict, reason, best, rows)


def capacity_gpu(memory_bytes: int, name: str = "planned GPU") -> dict:
    """A GPU that is not here, for planning: ``judge_fit(total, [capacity_gpu(24 * GIB)])``."""
    return {"index": 0, "name": name, "memory_total": int(memory_bytes), "memory_used": 0, "where": f"the {name}"}


def ways_to_fit(arch: Architecture, plan: Plan, capacity: int, limit: int = 4) -> list[dict]:
    """Changes that bring the estimate under ``FIT_MARGIN`` x ``capacity``, in the order a person
    would try them; each: {"change", "settings" (the changed Plan fields), "total"}."""
    p = plan.resolved()
    budget = FIT_MARGIN * capacity
    tries: list[tuple[str, str, dict]] = []  # (kind, words, changes): the first that fits of each kind
    if not p.gradient_checkpointing:
        tries.append(("gc", "turn on gradient checkpointing (about 30 % slower)", {"gradient_checkpointing": True}))
    b = p.batch_size
    while b > 1:
        b //= 2
        acc = p.gradient_accumulation_steps * (p.batch_size // b)
        tries.append(("batch", f"batch size {b} with gradient accumulation {acc} (same effective batch) and "
                      "gradient checkpointing",
                      {"batch_size": b, "gradient_accumulation_steps": acc, "gradient_checkpointing": True}))
    length = p.seq_len
    while length > 256:
        length //= 2
        tries.append(("length", f"batch size 1 and max length {length} (longer examples are cut)",
                      {"seq_len": length, "batch_size": 1, "gradient_checkpointing": True,
                       "gradient_accumulation_steps": p.gradient_accumulation_steps * p.batch_size}))
    if p.method == "full":
        tries.append(("8bit", "8-bit AdamW (bitsandbytes) with gradient checkpointing",
                      {"optimizer": "adamw-8bit", "gradient_checkpointing": True}))
    out: list[dict] = []
    done: set[str] = set()
    for kind, text, changes in tries:
        if kind in done:
            continue
        total = estimate(arch, replace(p, **changes)).memory.total
        if total <= budget:
            out.append({"change": text, "settings": changes, "total": total})
            done.add(kind)
    out = out[:limit]
    # another method: with the same shape if that fits, else the first smaller shape that does
    others = {"full": ["lora", "qlora"], "lora": ["qlora"], "qlora": []}[p.method]
    for method in others:
        label = {"lora": "LoRA instead of full fine-tuning", "qlora": "QLoRA: the base model in 4 bits"}[method]
        shapes = [({}, "")]
        shapes.append(({"gradient_checkpointing": True}, " with gradient checkpointing"))
        if p.batch_size > 1:
            shapes.append(({"gradient_checkpointing": True, "batch_size": 1,
                            "gradient_accumulation_steps": p.gradient_accumulation_steps * p.batch_size},
                           f", batch size 1 with gradient accumulation {p.gradient_accumulation_steps * p.batch_size}"))
        length = p.seq_len
        while length > 256:
            length //= 2
            shapes.append(({"gradient_checkpointing": True, "batch_size": 1, "seq_len": length,
                            "gradient_accumulation_steps": p.gradient_accumulation_steps * p.batch_size},
                           f", batch size 1, max length {length}"))
        for extra, words in shapes:
            changes = {"method": method, "gradient_checkpointing": None, **extra}
            total = estimate(arch, replace(p, **changes)).memory.total
            if total <= budget:
                out.append({"change": label + words, "settings": changes, "total": total})
                break
    return out


def estimate_all(arch: Architecture, plan: Plan | None = None) -> dict[str, Estimate]:
    """The same settings for each method (gradient checkpointing per the worker's default for each)."""
    base = plan or Plan()
    return {m: estimate(arch, replace(base, method=m)) for m in METHODS}


def best_estimates(arch: Architecture, plan: Plan | None = None, capacity: int | None = None) -> dict[str, Estimate]:
    """Each method with the worker's default gradient checkpointing, switched on where that is what
    makes it fit ``capacity`` (bytes) — the figures the Method screen compares and carries over."""
    out = {}
    for method, est in estimate_all(arch, plan).items():
        if capacity and est.memory.total > FIT_MARGIN * capacity and not est.plan.gradient_checkpointing:
            with_gc = estimate(arch, replace(est.plan, gradient_checkpointing=True))
            if with_gc.memory.total < est.memory.total:
                est = with_gc
        out[method] = est
    return out


def human_count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}" if n < 10 * size else f"{n / size:.1f}{unit}"
    return str(n)


__all__ = [
    "Architecture", "Estimate", "Fit", "GIB", "Linear", "METHODS", "Memory", "OBJECTIVES", "Plan", "TunedeckError",
    "best_estimates", "calibration_method", "capacity_gpu", "estimate", "estimate_all", "gib", "human_count",
    "judge_fit", "lora_params", "lora_targets", "ways_to_fit",
]

