"""Which earlier run preference tuning (DPO/KTO) can start from (``init_from``): a finished SFT run of
the same model that trained an adapter. Reads run folders only (no ML import): the TUI asks from a
thread, the Method wizard to say "start from your SFT run", Home to offer the demo's second step.
"""

from __future__ import annotations

from .errors import TunedeckError
from .runs import Run, RunInfo, get_run, list_runs

ADAPTER_METHODS = ("lora", "qlora")


def _usable(run: Run, info: RunInfo, model: str, data: str | None) -> bool:
    """A completed SFT run of ``model`` (on ``data``, when given) whose final weights are an adapter."""
    if info.state != "completed" or info.model != model or info.method not in ADAPTER_METHODS:
        return False
    if data is not None and info.data != data:
        return False
    if str(run.config().get("objective") or "sft") != "sft":
        return False
    weights = run.final_weights()
    return weights is not None and weights.is_adapter


def sft_run_for(model: str, *, prefer: str | None = None, data: str | None = None,
                newest: bool = True) -> str | None:
    """The id of the SFT run a DPO/KTO run of ``model`` can start from, or None: ``prefer`` (the run in
    view) when it is one, else (``newest``) the newest one, trained on ``data`` when given."""
    if prefer:
        try:
            run = get_run(prefer)
            if _usable(run, run.info(with_log=False), model, data):
                return run.id
        except TunedeckError:
            pass
    if not newest:
        return None
    try:
        infos = list_runs()
    except OSError:
        return None
    for info in infos:  # newest first
        if _usable(Run(info.dir), info, model, data):
            return info.id
    return None


def preference_settings(run_id: str, *, examples: int, gpu: bool, objective: str = "dpo") -> dict:
    """The settings of a DPO (or KTO) run that starts from the SFT run ``run_id``: the advisor's starting
    settings for preference tuning, with that run's method, LoRA shape and max length (the adapter it
    continues has that shape), and ``init_from`` naming it. Keyed like ``RunConfig`` (method included)."""
    from . import advisor

    run = get_run(run_id)
    earlier = run.config()
    method = earlier.get("method") if earlier.get("method") in ADAPTER_METHODS else "lora"
    settings = advisor.starting_settings(method, examples=examples, gpu=gpu, objective=objective)
    if isinstance(earlier.get("max_length"), int) and earlier["max_length"] > 0:
        settings["max_length"] = earlier["max_length"]
    if isinstance(earlier.get("lora"), dict):
        settings["lora"] = {**settings["lora"], **earlier["lora"]}
    return {**settings, "method": method, "init_from": run.id}
