"""What the machine's processor can do fast, for the precision choices of training
(``train.precision: auto``) and of local inference (``dtype: auto``)."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX): then bf16 roughly doubles
    the speed of a compute-bound forward; without them bf16 is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        flags = []
    if flags:  # Linux: the CPU's own flags
        return "avx512_bf16" in flags or "amx_bf16" in flags
    import torch

    check = getattr(torch.backends.mkldnn, "is_bf16_supported", None)  # not in every build
    try:
        return bool(check and check())
    except RuntimeError:
        return False
