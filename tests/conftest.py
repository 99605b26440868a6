"""Shared test fixtures: the devices every op test runs on, and hypothesis settings."""

import os

import pytest
from hypothesis import HealthCheck, settings
from threadpoolctl import threadpool_limits

import tinyllm as tl

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

DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.gpu,
            pytest.mark.skipif(
                not tl.cuda_available(), reason="no CUDA GPU (CuPy missing or no device)"
            ),
        ],
    ),
]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """Each test that takes ``device`` runs once per device; "cuda" skips cleanly without a GPU."""
    return request.param
