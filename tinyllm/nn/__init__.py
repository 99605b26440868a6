"""Layers and models' building blocks (chapters 03-08). ``tinyllm.nn.functional`` (``F``) holds the functions."""

from tinyllm.nn import functional
from tinyllm.nn.layers import Dropout, Linear
from tinyllm.nn.module import Module, Parameter

__all__ = [
    "Dropout",
    "Linear",
    "Module",
    "Parameter",
    "functional",
]
