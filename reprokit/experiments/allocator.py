"""The memory allocator of the training processes a sweep starts.

A CPU training step here allocates and frees thousands of small and medium tensors (autograd buffers of a
narrow network on 48-pixel crops), and tcmalloc serves that pattern faster than glibc's malloc (PyTorch's CPU
tuning guides recommend it for the same reason). No number changes: an allocator decides where a tensor
lives, never what is computed in it (docs/measurements.md has the timings and the bit-for-bit check).

Kernels of a sweep start with tcmalloc preloaded when the machine has it (Debian: libtcmalloc-minimal4,
which ``scripts/bootstrap.sh`` installs where it may). ``REPROKIT_ALLOCATOR=system`` keeps glibc's malloc.
A process cannot change its own allocator once started, so the commands that train (``reprokit train``,
``pretrain``, ``replay``), typed in a shell or started by the train notebook in JupyterLab, replace
themselves by the same command with tcmalloc preloaded (:func:`restart_with_allocator`) before they import
torch.
"""
from __future__ import annotations

import ctypes.util
import os
import sys

from reprokit.config import ConfigError

ENV_SWITCH = "REPROKIT_ALLOCATOR"
CHOICES = ("tcmalloc", "system")


def tcmalloc_library() -> str | None:
    """The soname of the machine's tcmalloc (the minimal build: no heap profiler), or None without one or
    off Linux, where the dynamic loader does not read LD_PRELOAD."""
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.util.find_library("tcmalloc_minimal") or ctypes.util.find_library("tcmalloc")


def with_allocator(env: dict[str, str]) -> dict[str, str]:
    """A copy of ``env`` for a training subprocess: tcmalloc first in LD_PRELOAD unless ``env`` chooses the
    system allocator or the machine has no tcmalloc. An existing LD_PRELOAD is kept after it."""
    choice = env.get(ENV_SWITCH, "tcmalloc")
    if choice not in CHOICES:
        raise ConfigError(f"environment variable {ENV_SWITCH}={choice!r}: expected one of {list(CHOICES)}")
    library = tcmalloc_library() if choice == "tcmalloc" else None
    preload = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p]
    if library is None or any(os.path.basename(p).startswith(library.split(".so")[0]) for p in preload):
        return dict(env)
    return {**env, "LD_PRELOAD": " ".join([library, *preload])}


def allocator_name(env: dict[str, str]) -> str:
    """'tcmalloc' or 'system': the allocator of a process started with ``env`` (for a run's records)."""
    return "tcmalloc" if "libtcmalloc" in env.get("LD_PRELOAD", "") else "system"


def restart_with_allocator(command: list[str]) -> None:
    """Replace this Python process by ``command`` (its interpreter's arguments, ``sys.orig_argv``) with the
    environment of :func:`with_allocator`, unless that environment is this process's own: then return.
    The process id stays, so a launcher that waits for it (a shell, torchrun, the train notebook) sees
    nothing happen."""
    env = with_allocator(dict(os.environ))
    if env.get("LD_PRELOAD") != os.environ.get("LD_PRELOAD"):
        os.execve(sys.executable, command, env)
