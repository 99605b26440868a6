"""Chapter 09's Adam, beyond tests/test_09_optim.py's formula checks: the bias of the averages
(eq. 9.7), Adam with beta1 = 0 as RMSprop (eq. 9.5), and what a resume that forgets the step count
t does to the next steps (section 9.11, with the bias correction of eq. 9.8). All float64.
"""

import numpy as np
import pytest

import tinyllm as tl
from tinyllm import optim
from tinyllm.nn import Parameter

pytestmark = pytest.mark.ch09


def adam_steps(params, adam, gradients) -> list[np.ndarray]:
    """Apply each gradient in turn; return the change of the (single) parameter at each step."""
    steps = []
    for g in gradients:
        before = params[0].data.copy()
        params[0].grad = tl.Tensor(np.array(g, dtype=np.float64))
        adam.step()
        steps.append(params[0].data - before)
    return steps


def test_the_averages_start_biased_by_one_minus_beta_to_the_t():
    """Eq. 9.7 with a constant gradient (E[g] = g exactly): Adam's stored m_t = (1 - beta1^t) g and
    v_t = (1 - beta2^t) g^2, step after step; eq. 9.6 is the recursion that produces them."""
    g = np.array([0.3, -2.0, 5e-3])
    params = [Parameter(np.zeros(3))]
    adam = optim.Adam(params, lr=1e-3, betas=(0.9, 0.999))
    for t in range(1, 31):
        params[0].grad = tl.Tensor(g.copy())
        adam.step()
        state = adam.state[0]
        assert state["step"] == t
        np.testing.assert_allclose(state["m"], (1 - 0.9 ** t) * g, rtol=1e-12)
        np.testing.assert_allclose(state["v"], (1 - 0.999 ** t) * g ** 2, rtol=1e-12)


def test_adam_without_momentum_is_rmsprop():
    """Eq. 9.5: with beta1 = 0, Adam's step is -lr g_t / (sqrt(v_hat_t) + eps); once beta2^t is
    negligible (beta2 = 0.5, t = 60) v_hat = v and it is RMSprop's step exactly."""
    rng = np.random.default_rng(0)
    gradients = rng.standard_normal((60, 4))
    params = [Parameter(np.zeros(4))]
    adam = optim.Adam(params, lr=0.01, betas=(0.0, 0.5), eps=1e-8)
    steps = adam_steps(params, adam, gradients)
    v = np.zeros(4)
    for t, g in enumerate(gradients, start=1):
        v = 0.5 * v + 0.5 * g ** 2                                          # eq. 9.5
        corrected = -0.01 * g / (np.sqrt(v / (1 - 0.5 ** t)) + 1e-8)
        np.testing.assert_allclose(steps[t - 1], corrected, rtol=1e-10)
    np.testing.assert_allclose(steps[-1], -0.01 * g / (np.sqrt(v) + 1e-8), rtol=1e-12)


def test_forgetting_the_step_count_shrinks_the_next_steps():
    """Section 9.11: resume Adam with the saved m, v but t reset to 0, and the bias correction
    (eq. 9.8) divides the already-unbiased averages again: each step is sqrt(1 - beta2^t) /
    (1 - beta1^t) times the exact resume's, 0.32 at t = 1 and 0.15 near t = 12 (smaller, not
    larger); with t restored the two runs agree."""
    g = np.array([0.7, -1.1])
    params = [Parameter(np.zeros(2))]
    adam = optim.Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=0.0)
    adam_steps(params, adam, [g] * 20_000)                                  # averages unbiased
    saved = adam.state_dict()

    def resume(step_count: int) -> list[np.ndarray]:
        fresh = [Parameter(params[0].data.copy())]
        other = optim.Adam(fresh, lr=1e-3, betas=(0.9, 0.999), eps=0.0)
        state = {**saved, "state": {0: {**saved["state"][0], "step": step_count}}}
        other.load_state_dict(state)
        return adam_steps(fresh, other, [g] * 12)

    exact, forgotten = resume(20_000), resume(0)
    np.testing.assert_allclose(exact[0], -1e-3 * np.sign(g), rtol=1e-6)   # |m/sqrt(v)| = 1
    ratios = np.array([f[0] / e[0] for f, e in zip(forgotten, exact)])
    t = np.arange(1, 13)
    np.testing.assert_allclose(ratios, np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t), rtol=1e-8)
    assert ratios[0] == pytest.approx(0.316, abs=1e-3) and ratios[-1] == pytest.approx(0.152,
                                                                                    abs=1e-3)
    assert np.all(ratios < 1)
