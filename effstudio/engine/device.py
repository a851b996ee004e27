"""Pick the device a job runs on: forced by name, or the best one available."""

from __future__ import annotations

import torch

from effstudio.config import ConfigError


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def pick_device(name: str = "auto") -> torch.device:
    """"auto" prefers cuda, then mps, then cpu; a named device must exist."""
    available = available_devices()
    if name == "auto":
        for preferred in ("cuda", "mps", "cpu"):
            if preferred in available:
                return torch.device(preferred)
    kind = name.split(":", 1)[0]
    if kind not in available:
        raise ConfigError("train.device", f"{name!r} is not available here; available: {', '.join(available)}")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
