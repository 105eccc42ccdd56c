"""The environment of the torch processes the agent starts (workers, synth, probe, check).

An allow-list, not the agent's whole environment: the agent's may hold the user's Hub token
(`HF_TOKEN`), the mirror's token, cloud or SSH credentials, none of which a worker needs, and a
worker runs third-party model code (`trust_remote_code` checkpoints, tokenizer templates) and
writes logs. What passes: locale and paths, the Python and library search paths, the GPU
runtimes' and numeric libraries' settings, the Hugging Face cache location and offline switches,
and the worker's own `LLORCH_WORKER_*` settings.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PASS_NAMES = frozenset({
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM", "TMPDIR", "TEMP", "TMP",
    "VIRTUAL_ENV", "CONDA_PREFIX", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH",
    "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONHASHSEED",
    "PYTHONWARNINGS", "XDG_CACHE_HOME", "HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
    "TRANSFORMERS_CACHE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM",
})
PASS_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "HIP_", "ROCR_", "ROCM_", "HSA_", "PYTORCH_", "TORCH_", "OMP_",
                 "MKL_", "KMP_", "OPENBLAS_", "LLORCH_WORKER_")
# never, whatever the lists above say (a LLORCH_WORKER_ name is the worker's; these are not)
NEVER = frozenset({"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "LLORCH_MIRROR_TOKEN", "LLORCH_WORKER_COMMAND"})


def child_env(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of `base` (default: this process's environment), plus `extra`."""
    src = os.environ if base is None else base
    env = {k: v for k, v in src.items()
           if k not in NEVER and (k in PASS_NAMES or k.startswith(PASS_PREFIXES))}
    env.update(extra or {})
    return env
