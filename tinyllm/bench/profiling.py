"""Where does a tinyllm training step spend its time? (chapter 11, "Making it fast";
``tinyllm bench --profile``)

:class:`OpTimer` wraps every op class's ``forward`` and ``backward`` with a timer (subtracting the
time of ops nested inside, so each second is counted once); :func:`profile_training_step` runs the
sub-steps of ``tinyllm.train.train_step`` one by one and reports its phases (forward, backward,
update), the seconds per op class, the time spent outside the ops (layers' Python, the engine's
graph walk), and the top of cProfile's table. A measuring tool: the library never imports it.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from collections import defaultdict
from collections.abc import Callable

from tinyllm.autograd import Function
from tinyllm.bench.training import BenchSetting, TinyllmStep, matmul_weights
from tinyllm.tensor import Tensor
from tinyllm.train import accumulate_gradients, apply_update


def _function_classes() -> list[type]:
    """Every op class defined so far (all subclasses of Function, at any depth)."""
    found, todo = [], [Function]
    while todo:
        for cls in todo.pop().__subclasses__():
            if cls not in found:  # a class with two op parents is reached twice
                found.append(cls)
                todo.append(cls)
    return found


class OpTimer:
    """Seconds spent in each op class's ``forward`` and ``backward`` (a tool, not library code).

    Inside ``with OpTimer() as timer:`` every op class's own ``forward``/``backward`` is replaced by
    a timed wrapper; the originals come back on exit. Times are exclusive: an op run inside another
    op's forward counts for itself only. ``timer.seconds[(name, "forward")]``, ``timer.calls[...]``.
    """

    def __init__(self):
        self.seconds: dict[tuple[str, str], float] = defaultdict(float)
        self.calls: dict[tuple[str, str], int] = defaultdict(int)
        self._saved: list[tuple[type, str, Callable]] = []
        self._nested = [0.0]  # stack: time of timed calls inside the running one

    def __enter__(self) -> OpTimer:
        for cls in _function_classes():
            for method in ("forward", "backward"):
                if method in vars(cls):
                    original = vars(cls)[method]
                    self._saved.append((cls, method, original))
                    setattr(cls, method, self._timed((cls.__name__, method), original))
        return self

    def __exit__(self, *exc_info) -> None:
        for cls, method, original in reversed(self._saved):
            setattr(cls, method, original)
        self._saved.clear()

    def _timed(self, key: tuple[str, str], original: Callable) -> Callable:
        def timed(op, *args, **kwargs):
            self._nested.append(0.0)
            start = time.perf_counter()
            try:
                return original(op, *args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                self.seconds[key] += elapsed - self._nested.pop()
                self._nested[-1] += elapsed
                self.calls[key] += 1

        return timed


class BackwardTimer:
    """Seconds spent inside ``Tensor.backward`` (the backward pass, graph walk included).

    ``accumulate_gradients`` runs forward and backward passes in turn; this splits its time in two.
    """

    def __init__(self):
        self.seconds = 0.0
        self._original: Callable | None = None

    def __enter__(self) -> BackwardTimer:
        self._original = original = Tensor.backward

        def timed(tensor, *args, **kwargs):
            start = time.perf_counter()
            try:
                return original(tensor, *args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        Tensor.backward = timed
        return self

    def __exit__(self, *exc_info) -> None:
        Tensor.backward = self._original


def profile_training_step(setting: BenchSetting, steps: int, peak: float, top: int = 25) -> dict:
    """Print where a tinyllm step spends its time: phases, op classes, cProfile."""
    runner = TinyllmStep(setting.config, setting.batch_size)
    for _ in range(setting.warmup):
        runner.step()
    recipe = runner.recipe
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "update": []}
    with OpTimer() as timer, BackwardTimer() as backward:
        for _ in range(steps):  # train_step's sub-steps, timed one by one
            start, backward_before = time.perf_counter(), backward.seconds
            runner.scheduler.step()
            accumulate_gradients(runner.model, runner.task, runner.data_rng, recipe.grad_accum)
            after_gradients = time.perf_counter()
            apply_update(runner.model, runner.optimizer, recipe.grad_clip)
            backward_seconds = backward.seconds - backward_before
            phases["forward"].append(after_gradients - start - backward_seconds)
            phases["backward"].append(backward_seconds)
            phases["update"].append(time.perf_counter() - after_gradients)
    ms = {name: 1e3 * sum(values) / steps for name, values in phases.items()}  # means: they add up
    total = sum(ms.values())
    print(f"\nprofile of a tinyllm step, {setting.name}, mean of {steps} steps with op timers "
          f"({total:.1f} ms per step)")
    print(f"  forward (model + loss) {ms['forward']:8.1f} ms  {ms['forward'] / total:5.1%}")
    print(f"  backward               {ms['backward']:8.1f} ms  {ms['backward'] / total:5.1%}")
    print(f"  clip + AdamW + zero    {ms['update']:8.1f} ms  {ms['update'] / total:5.1%}")

    names = sorted({name for name, _ in timer.seconds},
                   key=lambda n: -(timer.seconds[(n, "forward")] + timer.seconds[(n, "backward")]))
    print(f"  {'op class':<28}{'calls/step':>11}{'forward ms':>12}{'backward ms':>13}"
          f"{'total ms':>10}{'share':>8}")
    op_ms = {}
    for name in names:
        forward, backward_ms = (1e3 * timer.seconds[(name, m)] / steps
                                for m in ("forward", "backward"))
        op_ms[name] = {"forward_ms": round(forward, 3), "backward_ms": round(backward_ms, 3)}
        calls = timer.calls[(name, "forward")] / steps
        print(f"  {name:<28}{calls:>11.0f}{forward:>12.2f}{backward_ms:>13.2f}"
              f"{forward + backward_ms:>10.2f}{(forward + backward_ms) / total:>8.1%}")
    ops_forward = sum(v["forward_ms"] for v in op_ms.values())
    ops_backward = sum(v["backward_ms"] for v in op_ms.values())
    outside_forward, outside_backward = ms["forward"] - ops_forward, ms["backward"] - ops_backward
    print(f"  {'outside ops, forward':<39}{outside_forward:>12.2f}{'':>13}{outside_forward:>10.2f}"
          f"{outside_forward / total:>8.1%}   (layers' Python, Tensor bookkeeping, checks)")
    print(f"  {'outside ops, backward':<39}{'':>12}{outside_backward:>13.2f}"
          f"{outside_backward:>10.2f}"
          f"{outside_backward / total:>8.1%}   (graph walk, unbroadcast, gradient sums)")

    config = setting.config
    tokens = setting.batch_size * config.context_length
    matmul_flops = 6 * matmul_weights(config) * tokens
    attention_flops = 12 * config.num_layers * config.context_length * config.d_model * tokens
    rates = {}
    for name, flops in (("MatMul", matmul_flops), ("ScaledDotProductAttention", attention_flops)):
        if name in op_ms:
            seconds = (op_ms[name]["forward_ms"] + op_ms[name]["backward_ms"]) / 1e3
            rates[name] = flops / seconds / 1e9
            print(f"  inside {name}: {flops / 1e9:.2f} GFLOP per step at {rates[name]:.1f} GFLOP/s "
                  f"({rates[name] / peak:.0%} of the peak)")

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(steps):
        runner.step()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    print(f"\ncProfile of {steps} steps, {setting.name}, sorted by tottime (top {top}):")
    print(text.getvalue().strip("\n"))
    return {"phases_ms": {k: round(v, 3) for k, v in ms.items()}, "ops_ms": op_ms,
            "outside_ops_ms": {"forward": round(outside_forward, 3),
                               "backward": round(outside_backward, 3)},
            "gflops_inside": {k: round(v, 2) for k, v in rates.items()}}
