"""Mixed precision in one place: the choices, their autocast dtypes, and what ``auto`` picks.

bf16 autocast pays only where the hardware multiplies bfloat16 natively: GPUs since Ampere, and CPUs
with AMX tiles or AVX-512 BF16 (about 2x fp32 for a small BERT). A CPU without them (AVX2-only AMD
EPYC, older Intel, Apple or other ARM chips) emulates bf16, and a step runs 15-25x *slower* than
fp32 (a ``Linear(384, 1536)`` forward + backward on 2,048 rows: 3.76 s in bf16 against 0.25 s in
fp32). GPUs without bf16 (a T4, a V100) want fp16 with loss scaling instead. So ``auto``, the default
everywhere, asks the device:

    from bertmini.precision import autocast, resolve_precision
    choice = resolve_precision("auto", torch.device("cpu"))   # PrecisionChoice(precision="bf16", ...)
    with autocast("cpu", choice):
        loss = model(**batch).loss

``BERTMINI_PRECISION=fp32|bf16|fp16`` makes ``auto`` resolve to that value (how tests and CI simulate a
CPU without native bf16). The probes are small functions, so tests can monkeypatch them.
"""
from __future__ import annotations

import inspect
import os
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import ContextManager

import torch

__all__ = ["PRECISIONS", "AUTOCAST_DTYPES", "ENV_VAR", "PrecisionChoice", "check_precision", "resolve_precision",
           "autocast", "autocast_dtype", "cpu_bf16_feature", "cuda_bf16_supported"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
ENV_VAR = "BERTMINI_PRECISION"
SLOW_BF16 = "~15-25x slower than fp32"
_DEVICE_AUTOCAST_API = hasattr(torch, "get_autocast_dtype")  # torch >= 2.4: get_autocast_dtype(device)


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run computes in: ``precision`` (fp32 | bf16 | fp16), what was ``requested``, and why."""
    precision: str
    requested: str
    reason: str

    @property
    def dtype(self) -> torch.dtype | None:
        """The autocast dtype (None: plain fp32, no autocast)."""
        return AUTOCAST_DTYPES[self.precision]

    def to_dict(self) -> dict[str, str]:
        """The record kept in summary.json / metrics.json."""
        return {"requested": self.requested, "used": self.precision, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.precision} ({self.reason})"


def check_precision(value: str, where: str = "precision") -> str:
    """``value`` when it is one of :data:`PRECISIONS`, else a ValueError listing them."""
    if value not in PRECISIONS:
        raise ValueError(f"{where}: expected one of {PRECISIONS}, got {value!r}")
    return value


# -- capability probes ---------------------------------------------------------------------------
def cpu_bf16_feature() -> str | None:
    """``"AMX"`` or ``"AVX-512 BF16"`` when this CPU multiplies bf16 natively, else None.

    Uses torch's private probes when this torch has them; without them fp32 is the safe guess.
    """
    for name, probe in (("AMX", "_is_amx_tile_supported"), ("AVX-512 BF16", "_is_avx512_bf16_supported")):
        check = getattr(torch.cpu, probe, None)
        if callable(check) and check():
            return name
    return None


def cuda_bf16_supported() -> bool:
    """Native bf16 on the current CUDA device (Ampere or newer); emulated bf16 does not count."""
    if "including_emulation" in inspect.signature(torch.cuda.is_bf16_supported).parameters:  # torch >= 2.4
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return torch.cuda.is_bf16_supported()


# -- resolution ----------------------------------------------------------------------------------
def _auto(device: torch.device) -> tuple[str, str]:
    """``(precision, reason)`` for ``auto`` on ``device``."""
    if device.type == "cuda":
        if cuda_bf16_supported():
            return "bf16", "auto: this GPU has native bf16"
        return "fp16", "auto: this GPU has no native bf16 (pre-Ampere, e.g. a T4): fp16 with loss scaling"
    if device.type == "cpu":
        feature = cpu_bf16_feature()
        if feature:
            return "bf16", f"auto: this CPU has {feature} matmuls"
        return "fp32", (f"auto: this CPU has no native bf16 matmuls (no AMX, no AVX-512 BF16): bf16 would run "
                        f"{SLOW_BF16}")
    if device.type == "mps":
        return "fp32", ("auto: fp32 on Apple MPS (bf16 autocast is not reliably faster there, and fp16 needs "
                        "loss scaling, which bertmini does on CUDA only)")
    return "fp32", f"auto: fp32 on {device.type} (no probe for native bf16 on this device)"


def _explicit(precision: str, requested: str, reason: str, device: torch.device) -> PrecisionChoice:
    """Check a concrete precision against ``device``: fp16 needs CUDA; emulated bf16 warns."""
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"precision='fp16' needs CUDA (device is {device}); use 'auto' (bf16 where this device "
                         "multiplies it natively, else fp32)")
    if precision == "bf16" and device.type == "cpu" and not cpu_bf16_feature():
        warnings.warn(f"precision='bf16' on a CPU without native bf16 matmuls (no AMX, no AVX-512 BF16): bf16 is "
                      f"emulated and runs {SLOW_BF16}; use precision 'auto' (fp32 here) or 'fp32'",
                      UserWarning, stacklevel=3)
        reason += f"; this CPU emulates bf16 ({SLOW_BF16})"
    return PrecisionChoice(precision, requested, reason)


def resolve_precision(requested: str, device: torch.device | str) -> PrecisionChoice:
    """The precision to run ``requested`` (auto | fp32 | bf16 | fp16) in on ``device``.

    ``auto``: CUDA -> bf16 if the GPU has it natively, else fp16; CPU -> bf16 with AMX or AVX-512 BF16,
    else fp32; MPS and others -> fp32. ``BERTMINI_PRECISION`` overrides what ``auto`` picks.
    An explicit ``fp16`` off CUDA is an error; an explicit ``bf16`` on a CPU that emulates it warns.
    """
    check_precision(requested)
    device = torch.device(device)
    if requested != "auto":
        return _explicit(requested, requested, "requested", device)
    override = os.environ.get(ENV_VAR, "").strip()
    if override:
        if override not in AUTOCAST_DTYPES:
            raise ValueError(f"{ENV_VAR}={override!r}: expected one of {tuple(AUTOCAST_DTYPES)} (or unset it)")
        return _explicit(override, "auto", f"auto: {ENV_VAR}={override}", device)
    precision, reason = _auto(device)
    return PrecisionChoice(precision, "auto", reason)


def autocast(device: torch.device | str, precision: str | PrecisionChoice) -> ContextManager:
    """Autocast on ``device`` in ``precision`` (matmuls in 16 bits, reductions in fp32), or nothing for fp32.

    ``precision``: a :class:`PrecisionChoice` (resolved once, e.g. by the Trainer) or a name, resolved here
    with :func:`resolve_precision` (so ``auto`` works, and fp16 off CUDA is refused).
    """
    device = torch.device(device)
    choice = resolve_precision(precision, device) if isinstance(precision, str) else precision
    dtype = choice.dtype
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes in on ``device_type`` right now, or None when autocast is off there.

    ``torch.get_autocast_dtype(device)`` and ``is_autocast_enabled(device)`` arrived in torch 2.4; older
    versions have one function per device kind.
    """
    if _DEVICE_AUTOCAST_API:
        return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    if device_type == "cpu":
        return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
    return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
