"""Where a notebook's relative paths point: the project root, not the kernel's working directory.

JupyterLab starts a kernel in the notebook's folder (``notebooks/``), papermill in whatever ``--cwd`` it is
given, a sweep in the folder it was started from. The parameter files, run folders and data sets are named
relative to the project root (the folder holding ``notebooks/`` and ``params/``), so every notebook's first
code cell calls :func:`enter_project`: it finds that root, makes it the kernel's working directory (so the
relative paths inside parameter files, ``data.root: data/digits``, also resolve there) and resolves the
notebook's path parameters against it. A relative path typed in a parameters cell then means the same in
JupyterLab, under papermill from any folder and inside a sweep.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MARKERS = ("notebooks", "params")  # a project root holds both folders
ROOT_VARIABLE = "REPROKIT_PROJECT"  # names the root explicitly (a package installed outside its checkout)


class ProjectPathError(FileNotFoundError):
    """A notebook path parameter that does not exist where it was resolved (the message says where)."""


def is_project_root(folder: Path) -> bool:
    return all((folder / m).is_dir() for m in MARKERS)


def _walk_up(start: Path) -> Path | None:
    return next((f for f in (start, *start.parents) if is_project_root(f)), None)


@dataclass(frozen=True)
class Project:
    root: Path  # absolute
    found_from: str  # how the root was found, for messages

    def resolve(self, value: str | os.PathLike) -> Path:
        """``value`` as an absolute path: relative ones against the root, ``~`` expanded."""
        path = Path(value).expanduser()
        return path if path.is_absolute() else self.root / path

    def path(self, name: str, value: str | os.PathLike, expect: str | None = None) -> Path:
        """The notebook parameter ``name`` = ``value`` resolved against the root; returned relative to the root
        when it lies inside it (the kernel runs there, and records such as provenance sidecars stay free of
        machine-specific prefixes), absolute otherwise. ``expect`` "file" or "dir" requires it to exist as one."""
        full = self.resolve(value)
        if expect == "file" and not full.is_file() or expect == "dir" and not full.is_dir():
            kind = "file" if expect == "file" else "folder"
            state = f"is a {'folder' if full.is_dir() else 'file'}, not a {kind}" if full.exists() else "does not exist"
            raise ProjectPathError(f"{name} = {str(value)!r} resolved to {full}, which {state}; expected an existing "
                                   f"{kind} ({self.where()})")
        try:
            return full.relative_to(self.root)
        except ValueError:
            return full

    def where(self) -> str:
        return f"relative paths resolve against the project root {self.root}, found from {self.found_from}"


def find_project(notebook: str | None = None, cwd: str | Path | None = None) -> Project:
    """The project root: ``$REPROKIT_PROJECT`` if set; else the nearest folder holding ``notebooks/`` and
    ``params/`` above the notebook (``notebook``, default ``$JPY_SESSION_NAME``, which Jupyter's server gives
    the kernels it starts), above the working directory, or above this package (an editable install)."""
    explicit = os.environ.get(ROOT_VARIABLE)
    if explicit:
        root = Path(explicit).expanduser().resolve()
        if not is_project_root(root):
            raise ProjectPathError(f"${ROOT_VARIABLE} = {explicit!r} ({root}) holds no {' and '.join(MARKERS)} "
                                   "folders; expected the root of a reprokit checkout")
        return Project(root, f"${ROOT_VARIABLE}")
    notebook = notebook or os.environ.get("JPY_SESSION_NAME")
    cwd = Path(cwd or os.getcwd()).resolve()
    starts = []
    if notebook:
        starts.append((cwd / Path(notebook).expanduser()).parent)
    starts += [cwd, Path(__file__).resolve().parents[1]]
    labels = ["the notebook's location", "the working directory", "the reprokit package's location"][-len(starts):]
    for label, start in zip(labels, starts):
        root = _walk_up(start)
        if root:
            return Project(root, f"{label} ({start})")
    tried = ", ".join(f"{label} {start}" for label, start in zip(labels, starts))
    raise ProjectPathError(f"no project root (a folder holding {' and '.join(MARKERS)}) above {tried}; set "
                           f"${ROOT_VARIABLE} to the root of a reprokit checkout")


def enter_project(notebook: str | None = None) -> Project:
    """Find the project root (:func:`find_project`) and make it the working directory of this process."""
    project = find_project(notebook)
    os.chdir(project.root)
    print(f"project root {project.root} (found from {project.found_from})")
    return project
