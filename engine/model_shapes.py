"""A model's shapes from its ``config.json``, built on PyTorch's ``meta`` device (no weights): the
``Architecture`` that ``engine.estimate``'s arithmetic works on. Needs torch and transformers, so it
runs in the CLI or a helper process, never in the TUI.
"""

from __future__ import annotations

import json
from pathlib import Path

from .errors import ConfigError, ModelNotFound
from .estimate import Architecture, Linear
from .paths import builtin_dir


def configs_dir() -> Path:
    return builtin_dir() / "configs"


def builtin_models() -> dict[str, dict]:
    """Short name -> {"path", "hub_id", "display"} for the config.json files shipped with Tunedeck."""
    out = {}
    for path in sorted(configs_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out[path.stem] = {
            "path": str(path),
            "hub_id": data.get("_tunedeck_hub_id") or data.get("_name_or_path", ""),
            "display": data.get("_tunedeck_display") or path.stem,
        }
    return out


def load_config(ref: str) -> tuple[dict, str]:
    """(config dict, display name) for a short name (``llama-3.1-8b``), a hub id we ship a config for,
    a ``config.json`` path, a model folder, a .gguf file, ``demo``, or a hub id (cache / online)."""
    ref = (ref or "").strip()
    builtins = builtin_models()
    key = ref.lower()
    for name, info in builtins.items():
        if key == name or (info["hub_id"] and key == info["hub_id"].lower()):
            return json.loads(Path(info["path"]).read_text()), info["display"]
    path = Path(ref).expanduser()
    if path.suffix == ".json":
        if not path.is_file():
            raise ModelNotFound(f"Config file {path} does not exist; check the path, or use a built-in "
                                f"name ({', '.join(builtins)}).")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); "
                              "pass the model's config.json.") from None
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ConfigError(f"{path} is not a JSON text; pass the model's config.json.") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{path} holds no JSON object; pass the model's config.json.")
        return config, path.parent.name or path.name
    from . import models

    try:
        config = models.config_json(ref)
    except ModelNotFound as exc:
        raise ModelNotFound(f"{exc} Built-in configs that work offline: {', '.join(builtins)}.") from None
    if ref == models.DEMO:
        return config, models.DEMO_NAME
    return config, models.resolve(ref).display



def _text_config(config):
    get = getattr(config, "get_text_config", None)
    return get() if get else config


def inspect_model(config: dict, name: str = "") -> Architecture:
    """Build the model on the meta device from ``config`` and read its shapes (needs transformers)."""
    import torch
    from torch import nn
    from transformers import AutoConfig, AutoModelForCausalLM

    d = {k: v for k, v in config.items() if not k.startswith("_tunedeck")}
    d.pop("quantization_config", None)  # count the original shapes, not a pre-quantised layout
    model_type = d.pop("model_type", None)
    if not model_type:
        raise ConfigError(f"{name or 'config.json'}: no model_type field; pass the config.json of a "
                          "transformers model.")
    try:
        cfg = AutoConfig.for_model(model_type, **d)
    except (ValueError, KeyError) as exc:
        raise ConfigError(f"{name or 'config.json'}: model_type {model_type!r} is not known to this "
                          f"transformers version ({exc.__class__.__name__}); upgrade transformers or "
                          "pick another model.") from None
    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - any build failure is one sentence for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{name or 'config.json'}: cannot build a causal LM from this config "
                          f"({first[:200]}).") from None

    text = _text_config(model.config)
    n_layers = int(getattr(text, "num_hidden_layers"))
    layers = None
    layers_prefix = ""
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            layers, layers_prefix = module, mod_name
            break
    if layers is None:
        raise ConfigError(f"{name or model_type}: could not find the {n_layers} decoder layers of "
                          f"{type(model).__name__}; this architecture is not supported by the estimate.")

    def linears_of(module) -> list[Linear]:
        return [Linear(n, m.in_features, m.out_features, m.bias is not None)
                for n, m in module.named_modules() if isinstance(m, nn.Linear)]

    layer_linears = linears_of(layers[0])
    norm_dims = []
    for _, m in layers[0].named_modules():
        cls = type(m).__name__
        if "Norm" in cls and getattr(m, "weight", None) is not None and m.weight.dim() == 1:
            norm_dims.append(int(m.weight.shape[0]))

    out_emb = model.get_output_embeddings()
    in_emb = model.get_input_embeddings()
    tied = out_emb is not None and in_emb is not None and out_emb.weight is in_emb.weight
    other = []
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear) and m is not out_emb and not n.startswith(layers_prefix + "."):
            other.append(Linear(n, m.in_features, m.out_features, m.bias is not None))

    total = sum(p.numel() for p in model.parameters())  # parameters() counts tied weights once
    hidden = int(getattr(text, "hidden_size"))
    heads = int(getattr(text, "num_attention_heads"))
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    inter = getattr(text, "intermediate_size", None) or 4 * hidden
    known = all(lin.role for lin in layer_linears)
    return Architecture(
        name=name or getattr(text, "_name_or_path", "") or model_type,
        model_type=model_type,
        model_class=type(model).__name__,
        total_params=int(total),
        layers=n_layers,
        hidden=hidden,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate=int(inter),
        vocab=int(getattr(text, "vocab_size")),
        tied_embeddings=bool(tied),
        layer_linears=layer_linears,
        layer_norm_dims=norm_dims,
        other_linears=other,
        embedding_params=int(in_emb.weight.numel()) if in_emb is not None else 0,
        lm_head_params=0 if tied or out_emb is None else int(out_emb.weight.numel()),
        known_layout=known,
    )


def architecture_for(ref: str) -> Architecture:
    config, display = load_config(ref)
    return inspect_model(config, display)


