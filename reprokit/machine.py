"""The machine a process computes on, as records name it (sweep cells, replays, certificates, the glyph
pretraining's weights): the same code, configuration and seed give bit-identical numbers only on the same kind of
processor."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_description() -> dict:
    """The processor (and GPU) this process computes on.

    The same code, configuration and seed give bit-identical numbers only on the same kind of processor: torch
    picks its floating-point kernels by instruction set (``cpu_capability``: AVX2, AVX512, ...), and the
    rounding differences they leave grow through training. A record that says where it ran tells a replay or
    a rerun that differs whether the code or the machine changed."""
    import torch

    return {"cpu": _cpu_model(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_count": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _cpu_model() -> str:
    """The processor's model name with its vendor's family and model numbers (a hypervisor may shorten the
    name to the brand alone), else what ``platform`` knows."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0]
                      .splitlines() if ":" in line)
    except OSError:
        fields = {}
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    if "model name" not in fields:
        return platform.processor() or platform.machine()
    ids = [f"{k} {fields[k]}" for k in ("cpu family", "model") if k in fields]
    return f"{fields['model name']} ({', '.join([fields.get('vendor_id', '?'), *ids])})"
