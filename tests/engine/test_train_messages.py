"""The sentences a failed run ends with: out of memory names the knobs that help with this config,
divergence says what to lower, anything else is one line (the traceback stays in worker.log)."""

from engine.config import RunConfig
from engine.worker import is_oom, nan_message, one_line, oom_message


def test_out_of_memory_is_recognised_in_its_usual_shapes():
    class OutOfMemoryError(RuntimeError):  # the name torch.OutOfMemoryError carries
        pass

    assert is_oom(OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_oom(MemoryError())
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom(ValueError("shapes do not match"))


def test_out_of_memory_names_the_knobs_that_apply():
    lora = RunConfig.from_dict({"batch_size": 16, "max_length": 2048})
    text = oom_message(lora, 12, "cuda:0 (NVIDIA A10G)")
    assert text == ("Out of memory on cuda:0 (NVIDIA A10G) at step 12: lower batch_size (now 16) and raise "
                    "gradient_accumulation_steps to keep the effective batch, lower max_length (now 2048), set "
                    "gradient_checkpointing: true, or use method: qlora.")
    qlora = RunConfig.from_dict({"method": "qlora"})  # checkpointing already on, already QLoRA
    text = oom_message(qlora, 0, "cpu")
    assert "gradient_checkpointing" not in text and "qlora" not in text
    assert text.endswith(", or lower max_length (now 1024).")


def test_divergence_says_what_to_lower():
    cfg = RunConfig.from_dict({"learning_rate": 3e-3})
    assert nan_message(cfg, 7, "loss", float("nan")) == (
        "The loss became nan at step 7: training diverged; lower learning_rate (now 0.003, try 0.0002) "
        "and start again.")
    full = RunConfig.from_dict({"method": "full", "learning_rate": 5e-5})
    assert "try 5e-06" in nan_message(full, 3, "gradient norm", float("inf"))


def test_other_errors_are_one_line():
    exc = RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x96 and 64x96)\n  at line 3\n  more")
    assert one_line(exc) == "RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x96 and 64x96)"
    assert one_line(KeyError()) == "KeyError"
    assert len(one_line(ValueError("x" * 1000))) < 330
