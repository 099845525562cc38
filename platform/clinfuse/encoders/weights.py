"""Initialise an encoder from a local weights file (never downloaded).

Accepts plain state dicts, checkpoints holding one under ``state_dict``/``model_state_dict`` and
DataParallel-style ``module.`` prefixes, as MedicalNet releases them. Keys may name the bare backbone
(``conv1.weight``) or our wrapped encoder (``backbone.conv1.weight``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from clinfuse.errors import ConfigError

logger = logging.getLogger(__name__)

_NESTED_KEYS = ("state_dict", "model_state_dict")


def load_weights(module: nn.Module, path: str | Path) -> tuple[int, int]:
    """Load matching tensors of a weights file into ``module`` (non-strict).

    Args:
        module: the encoder to initialise (in place).
        path: local file written by ``torch.save`` holding a state dict.

    Returns:
        ``(missing, unexpected)``: how many of the module's tensors the file did not provide, and how many of
        the file's tensors were not used (unknown name or different shape).
    """
    path = Path(path)
    state = _read_state_dict(path)
    own = module.state_dict()
    matched: dict[str, torch.Tensor] = {}
    unexpected = 0
    for key, value in state.items():
        target = _target_key(key, own)
        if target is None or own[target].shape != value.shape:
            unexpected += 1
            continue
        matched[target] = value
    if not matched:
        raise ConfigError(
            f"{path}: none of its {len(state)} tensors match the {type(module).__name__} encoder; "
            "check that the weights belong to this architecture (encoders.<modality>.name)"
        )
    module.load_state_dict(matched, strict=False)
    missing = len(own) - len(matched)
    logger.info("loaded %d tensors from %s (%d missing, %d unexpected)", len(matched), path, missing, unexpected)
    return missing, unexpected


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found; set encoders.<modality>.weights to a local file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load fails on foreign files with many exception types
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: cannot be read as torch weights ({first}); save a state dict") from None
    for key in _NESTED_KEYS:
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ConfigError(
            f"{path}: not a state dict (expected a mapping of parameter names to tensors); "
            "save it with torch.save(model.state_dict(), path)"
        )
    return {_strip_prefix(str(k)): v for k, v in data.items()}


def _strip_prefix(key: str) -> str:
    # DataParallel checkpoints (MedicalNet among them) prefix every key with "module.".
    return key[len("module.") :] if key.startswith("module.") else key


def _target_key(key: str, own: dict[str, torch.Tensor]) -> str | None:
    if key in own:
        return key
    wrapped = f"backbone.{key}"
    return wrapped if wrapped in own else None
