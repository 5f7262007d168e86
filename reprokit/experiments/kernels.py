"""Notebook execution through papermill with the kernel's own output kept out of the terminal.

A Jupyter kernel writes start-up banners and transport warnings ("Kernel is running over TCP without
encryption", once per kernel) to the stdout and stderr it inherits. A sweep starts one kernel per cell, so a
terminal or a batch log would fill with that noise and hide the lines that matter. Here each kernel gets a
log file of its own instead: nothing is thrown away, and a failure report can point at the file.

Each kernel also gets the training allocator of :mod:`reprokit.experiments.allocator` (tcmalloc where the machine has it).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager

from reprokit.experiments.allocator import with_allocator


class _LoggedKernelManager(AsyncKernelManager):
    """Starts the kernel process with stdout and stderr appended to ``log_path`` (set on a subclass) and
    the training allocator preloaded."""

    log_path: str = ""

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor after we close ours
            kw.setdefault("stdout", log)
            kw.setdefault("stderr", subprocess.STDOUT)
            kw["env"] = with_allocator(kw.get("env") or dict(os.environ))
            await super()._async_launch_kernel(kernel_cmd, **kw)


def execute_logged(notebook: str | Path, output: str | Path, parameters: dict, kernel_log: str | Path,
                   **papermill_kwargs) -> None:
    """``papermill.execute_notebook`` with the kernel's stdout/stderr in ``kernel_log`` (appended)."""
    import papermill as pm

    Path(kernel_log).parent.mkdir(parents=True, exist_ok=True)
    manager = type("LoggedKernelManager", (_LoggedKernelManager,), {"log_path": str(kernel_log)})
    pm.execute_notebook(str(notebook), str(output), parameters=parameters, kernel_name="python3",
                        progress_bar=False, kernel_manager_class=manager, **papermill_kwargs)
