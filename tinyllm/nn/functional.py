"""Functions of tinyllm.nn, imported as ``F`` (``import tinyllm.nn.functional as F``).

Each name is implemented next to its layer and its chapter; this module gathers them in one namespace.
"""

from tinyllm.nn.layers import dropout

__all__ = [
    "dropout",
]
