"""Shared test fixtures: the devices every op test runs on (a strict CuPy stand-in without a GPU),
and hypothesis settings."""

import contextlib
import os

import fake_cupy
import pytest
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

import tinyllm as tl
from tinyllm import backend

# The suite runs as two workers on two cores (pytest -n 2). Each would start a pool of BLAS threads;
# with more threads than cores OpenBLAS threads spin-wait on each other and small matrix products
# get 30-200x slower. One BLAS thread per worker keeps the cores busy without that.
threadpool_limits(limits=1)
os.environ["OPENBLAS_NUM_THREADS"] = "1"  # inherited by the notebook kernels the tests start
os.environ["OMP_NUM_THREADS"] = "1"

# Gradient checks are slow per example; a moderate number of examples keeps the suite fast on 2
# cores.
settings.register_profile(
    "tinyllm", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "tinyllm"))

# "cuda" runs on real CuPy when this machine has a GPU, and otherwise on the strict NumPy stand-in
# for CuPy (tests/fake_cupy.py), installed for that one test: it proves dispatch and host/device
# hygiene (no implicit conversion, no NumPy function on a device array) and counts device->host
# transfers; it cannot prove CUDA numerics or speed. Outside "cuda" tests CuPy is left as it is.
REAL_GPU = tl.cuda_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@contextlib.contextmanager
def strict_device_installed(strict: bool = True):
    """The stand-in as CuPy while inside; tinyllm's probe forgets what it found, before and
    after."""
    backend._probe_cupy.cache_clear()
    try:
        with fake_cupy.installed(strict) as module:
            yield module
    finally:
        backend._probe_cupy.cache_clear()


@pytest.fixture(params=DEVICES)
def device(request):
    """Each test that takes ``device`` runs once per device; "cuda" is a real GPU if there is one,
    else the strict stand-in."""
    if request.param == "cuda" and not REAL_GPU:
        with strict_device_installed():
            yield "cuda"
    else:
        yield request.param


@pytest.fixture
def strict_device():
    """The strict stand-in as CuPy, even on a machine with a GPU: for tests that count transfers
    (``strict_device.TRANSFERS``) or check what the stand-in refuses."""
    with strict_device_installed() as module:
        yield module
