"""Which device to run on, and waiting for it (the only module that asks torch about devices)."""
import torch

from .errors import MASCError


def mps_available():
    """Whether the Apple GPU (MPS) can be used here."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick_device(name="auto"):
    """cuda, then mps, then cpu for "auto"; otherwise the named device (checked). A
    ``torch.device`` is returned as it is."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if mps_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise MASCError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    return device


def sync(device):
    """Wait for a CUDA device's queued work (so that a clock reads its time); else nothing."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        torch.cuda.synchronize()
