"""Floating-point formats and dynamic loss scaling (chapter 16, "Mixed precision").

A binary floating-point number is (-1)^s * 1.m * 2^(e - bias). With p significant bits (the
implicit 1 included), rounding to nearest gives a relative error of at most u = 2^-p for a
*normal* number (eq. 16.1, the unit roundoff):

    format     bits   exponent  p (significand)  largest finite    u = 2^-p
    float32     32       8          24           3.4e38            2^-24 ~ 6.0e-8
    float16     16       5          11           65504             2^-11 ~ 4.9e-4
    bfloat16    16       8           8           3.4e38            2^-8  ~ 3.9e-3

float16 keeps precision and loses range: a gradient below 2^-24 flushes to 0 and one above 65504
becomes inf. Loss scaling (Micikevicius et al. 2018, "Mixed Precision Training", section 3.2)
multiplies the loss by S before the backward pass, so every gradient is S times larger and the
small ones survive, then divides by S in float32 before the update (eq. 16.2):

    g = (1 / S) * d(S L)/d theta

:class:`LossScaler` chooses S dynamically: start at 2^16; if any scaled gradient is inf or nan,
skip the step and halve S; after N clean steps in a row (2000 by default) double S.

bfloat16 keeps float32's exponent and cuts the significand to 8 bits, so it needs no loss scaling.
NumPy has no bfloat16: :func:`round_to_bfloat16` rounds float32 values to the nearest bfloat16
(ties to even) on their bit patterns and returns float32 arrays whose low 16 bits are zero.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from tinyllm.backend import get_array_module
from tinyllm.tensor import Tensor

PRECISIONS = ("fp32", "fp16", "bf16")
UNIT_ROUNDOFF = {"fp32": 2.0 ** -24, "fp16": 2.0 ** -11, "bf16": 2.0 ** -8}  # eq. 16.1

_LOW_HALF = np.uint32(0xFFFF)
_HIGH_HALF = np.uint32(0xFFFF0000)
_QUIET_NAN_BIT = np.uint32(0x00400000)


# --------------------------------------------------------------------------------------------------
# bfloat16, emulated on float32 bit patterns
# --------------------------------------------------------------------------------------------------


def bfloat16_bits(x) -> np.ndarray:
    """The bfloat16 bit patterns (uint16) nearest to float32 ``x``, ties to even (eq. 16.3).

    A float32 bit pattern b keeps its high 16 bits; the low 16 bits L decide the rounding:
    L > 0x8000 rounds up, L < 0x8000 down, L = 0x8000 (a tie) to the even neighbour. Adding
    0x7FFF + (bit 16 of b) and cutting the low half does all three at once; a carry out of the
    significand increments the exponent, which is the correct result (up to inf past the largest
    finite value). A nan keeps its sign and becomes a quiet nan (the addition could carry it into
    the sign bit).
    """
    xp = get_array_module(x)
    x = xp.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    rounding = ((bits >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF)  # 0x7FFF or 0x8000
    rounded = (bits + rounding) & _HIGH_HALF
    rounded = xp.where(xp.isnan(x), (bits | _QUIET_NAN_BIT) & _HIGH_HALF, rounded)
    return (rounded >> np.uint32(16)).astype(np.uint16)


def bfloat16_to_float32(bits) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32 (exact: bfloat16 is float32 without its low half)."""
    xp = get_array_module(bits)
    return (xp.asarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_to_bfloat16(x) -> np.ndarray:
    """float32 ``x`` rounded to the nearest bfloat16, ties to even, as float32 (eq. 16.3).

    |round(x) - x| <= 2^-8 |x| for normal x (u = 2^-8, eq. 16.1).
    """
    return bfloat16_to_float32(bfloat16_bits(x))


def round_to_precision(x, precision: str):
    """``x`` as the compute copy of one format: float16 array, bfloat16-rounded float32, float32."""
    check_precision(precision)
    if precision == "fp16":
        return x.astype(np.float16)
    if precision == "bf16":
        return round_to_bfloat16(x)
    return x.astype(np.float32)


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")


# --------------------------------------------------------------------------------------------------
# Dynamic loss scaling
# --------------------------------------------------------------------------------------------------


class LossScaler:
    """Dynamic loss scaling (Micikevicius et al. 2018, section 3.2; PyTorch's GradScaler).

    One step:  ``scaler.scale(loss).backward()``; ``if scaler.unscale_and_check(params):
    optimizer.step()``; ``scaler.update()``. The state machine (eq. 16.4):

        overflow (some gradient inf or nan):  skip the step, S <- S * backoff_factor, clean <- 0
        clean step:                           clean <- clean + 1; if clean = growth_interval:
                                              S <- S * growth_factor, clean <- 0

    ``enabled=False`` (float32, bfloat16) makes S = 1 and never skips a finite step.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_interval: int = 2000,
                 growth_factor: float = 2.0, backoff_factor: float = 0.5, enabled: bool = True):
        if not init_scale > 0 or not np.isfinite(init_scale):
            raise ValueError(f"init_scale must be a finite number > 0, got {init_scale}")
        if growth_interval < 1:
            raise ValueError(f"growth_interval must be >= 1 clean steps, got {growth_interval}")
        if not growth_factor > 1 or not 0 < backoff_factor < 1:
            raise ValueError("need growth_factor > 1 and 0 < backoff_factor < 1, got "
                             f"{growth_factor} and {backoff_factor}")
        self.enabled = enabled
        self.loss_scale = float(init_scale) if enabled else 1.0  # S
        self.growth_interval = int(growth_interval)  # N
        self.growth_factor, self.backoff_factor = float(growth_factor), float(backoff_factor)
        self.clean_steps = 0  # clean steps since the last change of S
        self.skipped_steps = 0  # steps skipped for overflow, over the whole run
        self.found_overflow = None  # the last check's verdict; None until the first check

    def scale(self, loss: Tensor) -> Tensor:
        """S * loss, whose backward gives S times every gradient (eq. 16.2)."""
        return loss * self.loss_scale

    def unscale_and_check(self, params: Iterable[Tensor]) -> bool:
        """Divide every gradient by S in float32 (in place); True if all are finite (do step).

        Gradients of a low-precision compute copy are cast to float32 first (the master weights'
        dtype), so 1/S is applied where it cannot underflow.
        """
        finite = True
        inverse = 1.0 / self.loss_scale
        for p in params:
            if p.grad is None:
                continue
            grad = p.grad.data.astype(p.dtype, copy=False) * inverse  # g = (1/S) d(S L)/d theta
            finite = finite and bool(get_array_module(grad).isfinite(grad).all())
            p.grad = Tensor(grad)  # a new array in the master weights' dtype
        self.found_overflow = not finite
        return finite

    def update(self) -> None:
        """Move the state machine one step on the last :meth:`unscale_and_check` (eq. 16.4)."""
        if self.found_overflow is None:
            raise RuntimeError("LossScaler.update() before unscale_and_check(): check the "
                               "gradients of this step first")
        if self.found_overflow:
            self.skipped_steps += 1
            self.clean_steps = 0
            if self.enabled:
                self.loss_scale *= self.backoff_factor
        else:
            self.clean_steps += 1
            if self.enabled and self.clean_steps >= self.growth_interval:
                self.loss_scale *= self.growth_factor
                self.clean_steps = 0
        self.found_overflow = None

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers, for a checkpoint's metadata: an exact resume continues the machine."""
        return {"loss_scale": self.loss_scale, "growth_interval": self.growth_interval,
                "growth_factor": self.growth_factor, "backoff_factor": self.backoff_factor,
                "clean_steps": self.clean_steps, "skipped_steps": self.skipped_steps,
                "enabled": self.enabled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = sorted(set(self.state_dict()) - set(state))
        if missing:
            raise KeyError(f"loss-scaler state lacks {missing}; was it saved by "
                           "LossScaler.state_dict()?")
        self.loss_scale = float(state["loss_scale"])
        self.growth_interval = int(state["growth_interval"])
        self.growth_factor = float(state["growth_factor"])
        self.backoff_factor = float(state["backoff_factor"])
        self.clean_steps = int(state["clean_steps"])
        self.skipped_steps = int(state["skipped_steps"])
        self.enabled = bool(state["enabled"])
        self.found_overflow = None

    def __repr__(self) -> str:
        return (f"LossScaler(loss_scale={self.loss_scale:g}, clean_steps={self.clean_steps}/"
                f"{self.growth_interval}, skipped_steps={self.skipped_steps})")
