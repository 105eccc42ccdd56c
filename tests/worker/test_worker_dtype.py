"""The worker's dtype check: a dtype the device computes in passes, one it cannot is `dtype_unsupported`."""

from __future__ import annotations

import pytest
import torch
from llorch_worker.engine import check_dtype
from llorch_worker.errors import EXIT_BACKEND, WorkerError


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_cpu_computes_in_every_dtype_here(dtype: torch.dtype) -> None:
    check_dtype("cpu", dtype)


def test_a_device_that_cannot_compute_is_a_clear_error() -> None:
    # The meta device has shapes but no numbers: the closest real stand-in for a device without kernels.
    with pytest.raises(WorkerError) as err:
        check_dtype("meta", torch.float16)
    assert err.value.code == "dtype_unsupported" and err.value.exit_code == EXIT_BACKEND
    assert "float16" in err.value.message and "--dtype" in err.value.message
