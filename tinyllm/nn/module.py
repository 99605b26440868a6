"""Module: a container of parameters and sub-modules (chapter 08, "Modules"; 09, checkpoints).

A model is a tree of modules. Each module stores its learnable weights as :class:`Parameter`
attributes and its children as module attributes (or lists of modules); ``parameters()`` walks the
tree in attribute order, so nothing has to be registered by hand. ``state_dict()`` names every
weight by its dotted path (``blocks.0.attn.q_proj.weight``), which is also how a checkpoint stores
it (``tinyllm.checkpoint.save_model`` writes the dict to a file; modules never touch files).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from tinyllm.backend import to_device, to_numpy
from tinyllm.tensor import Tensor


def _shape(value) -> tuple[int, ...]:
    """The shape of a host or device array, or of nested lists (np.shape would refuse CuPy's)."""
    return tuple(value.shape) if hasattr(value, "shape") else np.shape(value)


class Parameter(Tensor):
    """A learnable weight: a Tensor with ``requires_grad=True`` found by ``parameters()``."""

    def __init__(self, data):
        super().__init__(data, requires_grad=True)


class Module:
    """Base class of every layer and model: subclasses set attributes in ``__init__`` and write
    ``forward``."""

    training: bool = True

    def __call__(self, *args, **kwargs):
        if not hasattr(self, "forward"):
            raise TypeError(
                f"{type(self).__name__} has no forward(); define it to make the module callable"
            )
        return self.forward(*args, **kwargs)

    # --- walking the tree ------------------------------------------------------------------------
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        """Direct sub-modules in attribute order; a list of modules gives ``name.0``, ..."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value
            elif isinstance(value, (list, tuple)) and value and all(
                    isinstance(v, Module) for v in value):
                for index, child in enumerate(value):
                    yield f"{name}.{index}", child

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """This module (named ``prefix``, "" at the top) and every module below, by dotted name."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        """This module and all modules below it, depth first."""
        yield self
        for _, child in self.named_children():
            yield from child.modules()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every parameter with its dotted name; one shared by two modules (tied weights) once."""
        seen: set[int] = set()
        for name, parameter in self._all_parameters(prefix):
            if id(parameter) not in seen:
                seen.add(id(parameter))
                yield name, parameter

    def _all_parameters(self, prefix: str) -> Iterator[tuple[str, Parameter]]:
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield prefix + name, value
        for name, child in self.named_children():
            yield from child._all_parameters(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        """Number of learnable scalars (tied weights counted once)."""
        return sum(p.size for p in self.parameters())

    # --- training state --------------------------------------------------------------------------
    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active) for this module and all below it; returns self."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        """Evaluation mode (dropout off); returns self."""
        return self.train(False)

    def to(self, device: str) -> "Module":
        """Move every parameter to ``device`` in place; returns self."""
        for p in self.parameters():
            p.data = to_device(p.data, device)
        return self

    def astype(self, dtype) -> "Module":
        """Cast every parameter to ``dtype`` in place (float64 for gradchecks); returns self."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
        return self

    # --- state dicts (files: tinyllm.checkpoint) -------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Dotted name -> a host copy of the parameter's values."""
        return {name: to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> list[str]:
        """Copy ``state`` into the parameters (keeping their dtype and device).

        With ``strict=True`` any missing, unexpected or wrong-shaped entry is an error that names
        them all; with ``strict=False`` matching entries are loaded and the names not loaded are
        returned.
        """
        own = dict(self.named_parameters())
        missing = [name for name in own if name not in state]
        unexpected = [name for name in state if name not in own]
        wrong_shape = [
            f"{name}: checkpoint {_shape(state[name])}, model {own[name].shape}"
            for name in own if name in state and _shape(state[name]) != own[name].shape
        ]
        if strict and (missing or unexpected or wrong_shape):
            problems = []
            if missing:
                problems.append(f"missing from the checkpoint: {', '.join(missing)}")
            if unexpected:
                problems.append(f"not in the model: {', '.join(unexpected)}")
            if wrong_shape:
                problems.append(f"wrong shape: {'; '.join(wrong_shape)}")
            raise KeyError(
                f"load_state_dict into {type(self).__name__} failed ({' | '.join(problems)}); "
                "is this checkpoint from the same model configuration? Pass strict=False to load "
                "what matches."
            )
        skipped = {entry.split(":")[0] for entry in wrong_shape}
        for name, p in own.items():
            if name in state and name not in skipped:
                value = state[name] if hasattr(state[name], "dtype") else np.asarray(state[name])
                p.data = to_device(value, p.device).astype(p.dtype)  # a copy we own, any device
        return missing + unexpected + sorted(skipped)

    # --- printing --------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """Settings shown in ``repr`` (e.g. ``in_features=128, out_features=512``)."""
        return ""

    def __repr__(self) -> str:
        children = list(self.named_children())
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not children:
            return head + ")"
        lines = [head]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"
