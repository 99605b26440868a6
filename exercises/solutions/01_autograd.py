"""Reference solutions of exercises/01_autograd.py. Try the exercises first."""

from __future__ import annotations


def mul_backward(self, grad):
    """dL/da = g * b, dL/db = g * a   (table 1.1)"""
    need_a, need_b = self.needs_input_grad
    return grad * self.b if need_a else None, grad * self.a if need_b else None


def tanh_backward(self, grad):
    """dL/dx = g * (1 - y**2)   (eq. 1.7)"""
    return grad * (1 - self.y * self.y)


def topological_order(root):
    """Iterative depth-first search: a node is appended once all its inputs are."""
    order, visited, stack = [], set(), [(root, False)]  # (node, are its inputs already ordered?)
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
        elif id(node) not in visited:
            visited.add(id(node))
            stack.append((node, True))
            for parent in node._fn.inputs if node._fn is not None else ():
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order
