"""`GET /info`: the software and device facts that decide a worker's numbers (versions, device, dtype).

The matrix records them per cell (its environment fingerprint) so that a run can say what changed
since the previous one. Computed once per process: none of it changes while the worker runs.
"""

from __future__ import annotations

import platform
from typing import Any

from aiohttp import web

from . import __version__
from .httpkit import ready_state

_CACHE_KEY = "_environment"


def environment(engine: Any) -> dict[str, Any]:
    import torch
    import transformers

    device = str(engine.device)
    gpu = gpu_capability = None
    if device.startswith("cuda"):
        gpu = torch.cuda.get_device_name(device)
        gpu_capability = ".".join(str(x) for x in torch.cuda.get_device_capability(device))
    elif device == "mps":
        gpu = "Apple MPS"
    return {"worker_version": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if device.startswith("cuda") else None,
            "device": device, "dtype": engine.dtype_name, "gpu": gpu, "gpu_capability": gpu_capability,
            "kernel": platform.release(), "machine": platform.machine(), "threads": torch.get_num_threads(),
            # Fault injection (tests and demos) changes every number: a run must be able to say it was on.
            "faults": f"logit_noise={engine.noise.sigma:g}" if getattr(engine, "noise", None) is not None else "none"}


async def info(request: web.Request) -> web.Response:
    st = ready_state(request)
    cached = st.extra.get(_CACHE_KEY)
    if cached is None:
        cached = st.extra[_CACHE_KEY] = environment(st.engine)
    return web.json_response(cached)


def add_info_route(app: web.Application) -> None:
    app.router.add_get("/info", info)
