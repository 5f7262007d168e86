"""Code versions: which code a run executed, as a short digest, and whether a record is current.

Scheme 2 (what runs record now) digests the modules a training run of one method on one data set imports:
the closure of the static imports of the engine's loop, the method's module, the data set's module and the
model, read from the source (so it works the same on a git commit's files as on the working tree). Each module
counts as its syntax tree with docstrings removed (:func:`normalised`), so comments, docstrings and formatting
never move a version, and code no training run imports (tables, sweeps, the inspector, records, data checks)
never does either; nor do the inspector layers methods declare for display (``DISPLAY_MODULE``).

Scheme 1 (records written before scheme 2) digested the raw bytes of every file under a fixed list of folders.
Records keep the digest they were written with; a record is compared with today's code digested the same way,
and a record that names a clean commit gets its scheme-2 digest recomputed from that commit's files.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import re
import subprocess
from pathlib import Path

import reprokit

PACKAGE_DIR = Path(reprokit.__file__).resolve().parent
SCHEME = 2
# the roots of a training run's closure besides its method's module and its data set's module: the module of the
# training loop (the first of these a tree has: the loop moved out of engine/train.py, which now only binds it to
# a run directory's records) and the model
ENGINE_ENTRIES = ("engine/loop.py", "engine/train.py")
MODEL = "models/deeplab.py"
# Display only, never read by training (tests hold it so): the inspector layers' types, and what methods declare
# with them, ``inspector_layers = ...`` in a class body and the import of those types. Left out of the digest.
DISPLAY_MODULE = "methods/display.py"
DISPLAY_ATTRIBUTE = "inspector_layers"
Files = dict[str, bytes]  # package-relative path (``engine/loop.py``) -> source bytes


def tree_files(package_dir: str | Path | None = None) -> Files:
    """The package's Python sources as they are on disk now."""
    root = Path(package_dir or PACKAGE_DIR)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.py"))
            if "__pycache__" not in p.relative_to(root).parts}


@functools.lru_cache(maxsize=64)
def commit_files(commit: str, package_dir: str | Path | None = None) -> Files | None:
    """The package's Python sources as stored in git ``commit``; None when the repository lacks that commit."""
    cwd = Path(package_dir or PACKAGE_DIR)
    try:
        listing = subprocess.run(["git", "ls-tree", "-r", "-z", commit, "--", "."], cwd=cwd, capture_output=True,
                                 check=True).stdout.decode()
        blobs = [(entry.split("\t", 1)[1], entry.split()[2]) for entry in listing.split("\0")
                 if entry and entry.split()[1] == "blob"]
        blobs = [(rel, sha) for rel, sha in blobs if rel.endswith(".py") and "__pycache__" not in rel.split("/")]
        data = subprocess.run(["git", "cat-file", "--batch"], cwd=cwd, capture_output=True, check=True,
                              input="".join(f"{sha}\n" for _, sha in blobs).encode()).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    files, pos = {}, 0
    for rel, _ in blobs:  # each answer: "<sha> blob <size>\n<content>\n"
        header_end = data.index(b"\n", pos)
        size = int(data[pos:header_end].split()[2])
        files[rel] = data[header_end + 1:header_end + 1 + size]
        pos = header_end + 1 + size + 1
    return files


# --- scheme 2 ------------------------------------------------------------------------------------------------

def _display_only(node: ast.AST, in_class: bool) -> bool:
    """A statement that only declares what the inspector shows (``DISPLAY_ATTRIBUTE`` in a class body, an
    import from ``DISPLAY_MODULE``)."""
    if isinstance(node, ast.ImportFrom):
        return node.module == _module_name(DISPLAY_MODULE)
    targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
    return in_class and any(isinstance(t, ast.Name) and t.id == DISPLAY_ATTRIBUTE for t in targets)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Docstrings and display-only statements removed: neither is code a training run executes for its numbers."""
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:]
        if isinstance(node, (ast.Module, ast.ClassDef)):
            node.body = [s for s in node.body if not _display_only(s, isinstance(node, ast.ClassDef))]
    return tree


def _canonical(node) -> str:
    """A syntax tree as text, leaving out positions and empty or absent fields: the same text on every
    Python version that parses the code to the same tree (3.12 adds empty ``type_params``, 3.13's
    ``ast.dump`` drops empty fields)."""
    if isinstance(node, ast.AST):
        fields = [(name, getattr(node, name, None)) for name in node._fields]
        inner = ",".join(f"{name}={_canonical(value)}" for name, value in fields if value not in (None, []))
        return f"{type(node).__name__}({inner})"
    if isinstance(node, list):
        return "[" + ",".join(_canonical(item) for item in node) + "]"
    return repr(node)


@functools.lru_cache(maxsize=4096)
def normalised(source: bytes) -> str:
    """What a module's version is made of: its syntax tree without docstrings, comments, layout or display-only
    statements (:func:`_display_only`)."""
    return _canonical(_strip_docstrings(ast.parse(source)))


def _module_file(module: str, files: Files) -> str | None:
    """``reprokit.engine.loop`` -> ``engine/loop.py`` (or a package's ``__init__.py``) when it is in ``files``."""
    parts = module.split(".")
    if parts[0] != "reprokit":
        return None
    stem = "/".join(parts[1:])
    for rel in ((f"{stem}.py", f"{stem}/__init__.py") if stem else ("__init__.py",)):
        if rel in files:
            return rel
    return None


def _module_name(rel: str) -> str:
    stem = rel[:-len(".py")].removesuffix("/__init__").removesuffix("__init__")
    return ".".join(["reprokit", *filter(None, stem.split("/"))])


@functools.lru_cache(maxsize=4096)
def _imported_names(rel: str, source: bytes) -> tuple[str, ...]:
    """Every module name an ``import`` anywhere in the file may load (inside functions too: they run when the
    function is called), ``from a import b`` naming both ``a`` and ``a.b`` (b may be a submodule)."""
    package = _module_name(rel) if rel.endswith("__init__.py") else _module_name(rel).rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return tuple(names)


def imports_of(rel: str, files: Files) -> set[str]:
    """The modules of ``files`` that module ``rel`` imports (the package's own, found from its source)."""
    return {f for name in _imported_names(rel, files[rel]) if (f := _module_file(name, files)) and f != rel}


def _parents(rel: str, files: Files) -> list[str]:
    """The ``__init__.py`` files Python runs before the module ``rel``: those of every enclosing package."""
    parts = rel.split("/")[:-1]
    return [init for i in range(len(parts) + 1)
            if (init := "/".join([*parts[:i], "__init__.py"])) in files and init != rel]


def method_modules(files: Files) -> dict[str, str]:
    """Method name -> the module that declares it (``METHOD = MethodEntry("name", ...)`` at module level)."""
    found = {}
    for rel, source in files.items():
        if not rel.startswith("methods/") or b"MethodEntry(" not in source:
            continue
        for node in ast.parse(source).body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "METHOD" for t in node.targets)
                    and isinstance(node.value, ast.Call) and node.value.args
                    and isinstance(node.value.args[0], ast.Constant)):
                found[node.value.args[0].value] = rel
    return found


def training_closure(files: Files, method: str | None = None, dataset: str | None = None) -> set[str]:
    """The modules a training run of ``method`` on ``dataset`` imports: the static import closure of the
    engine's loop, the method's module, the data set's module and the model. The method registry imports
    method modules by discovery, not by name, so another method's module is in the closure only when this
    method imports it. ``method`` None takes every method's module (the code of the whole training path)."""
    methods = method_modules(files)
    engine = next((rel for rel in ENGINE_ENTRIES if rel in files), None)
    roots = [engine, MODEL, *([methods[method]] if method in methods else methods.values()),
             *([f"data/{dataset}.py"] if dataset else [])]
    todo, seen = [rel for rel in roots if rel in files], set()
    while todo:
        rel = todo.pop()
        if rel in seen:
            continue
        seen.add(rel)
        todo += [*_parents(rel, files), *imports_of(rel, files)]
    return seen


def digest_of(files: Files, method: str | None = None, dataset: str | None = None) -> str:
    """The scheme-2 code version of a run of ``method`` on ``dataset`` over ``files``."""
    h = hashlib.sha256(f"scheme {SCHEME}\0".encode())
    for rel in sorted(training_closure(files, method, dataset) - {DISPLAY_MODULE}):
        text = normalised(files[rel]).encode()
        h.update(f"{rel}\0{len(text)}\0".encode())
        h.update(text)
    return h.hexdigest()[:12]


def code_version(package_dir: str | Path | None = None, method: str | None = None,
                 dataset: str | None = None) -> str:
    """The code version (scheme 2) of a run of ``method`` on ``dataset`` with the package as it is on disk now.
    A git commit says nothing about uncommitted edits; this digest is exact for any tree."""
    return digest_of(tree_files(package_dir), method, dataset)


@functools.lru_cache(maxsize=1024)
def code_version_at(commit: str, package_dir: str | Path | None = None, method: str | None = None,
                    dataset: str | None = None) -> str | None:
    """The code version (scheme 2) of the package stored in git ``commit``; None when the repository lacks it."""
    files = commit_files(commit, package_dir)
    return None if files is None else digest_of(files, method, dataset)


# --- scheme 1: how records written before scheme 2 were digested -----------------------------------------

SCHEME1_FOLDERS = ("__init__.py", "config.py", "configure.py", "labels.py", "metrics.py", "data/", "models/",
                   "methods/", "engine/")
_SCHEME1_DECLARATION = re.compile(rb'^METHOD = MethodEntry\(\s*"(\w+)"', re.M)
_SCHEME1_METHODS_IMPORT = re.compile(rb"^\s*(?:from|import) reprokit\.methods\.(\w+)", re.M)


def scheme1_version(files: Files, method: str | None = None) -> str:
    """The scheme-1 digest: raw bytes of every file under ``SCHEME1_FOLDERS`` less the modules of methods that
    neither the shared code nor ``method``'s module imports (found by line patterns)."""
    files = {rel: data for rel, data in files.items() if rel.startswith(SCHEME1_FOLDERS)}
    owners = {name.decode(): rel for rel, data in files.items() for name in _SCHEME1_DECLARATION.findall(data)}
    if method in owners:
        by_module = {rel[len("methods/"):-len(".py")]: rel for rel in files if rel.startswith("methods/")}
        todo = [rel for rel in files if rel not in set(owners.values())] + [owners[method]]
        needed = set()
        while todo:
            rel = todo.pop()
            if rel not in needed:
                needed.add(rel)
                todo += [by_module[m.decode()] for m in _SCHEME1_METHODS_IMPORT.findall(files[rel])
                         if m.decode() in by_module]
        files = {rel: data for rel, data in files.items() if rel in needed}
    h = hashlib.sha256()
    for rel, data in sorted(files.items()):
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:12]


# --- records ---------------------------------------------------------------------------------------------

# Entries of a resolved configuration that say which run it is, not which configuration: the experiment's name,
# the seeds (initialisation and data order, labeled split, simulated weak labels) and the CPU threads. A
# certification runs one configuration for all its seeds, so its key leaves them out.
RUN_ENTRIES = ("name", "train.seed", "train.threads", "data.split_seed", "data.weak_seed")


def config_key(raw: dict) -> str:
    """A short stable key of a configuration: the digest of a resolved config mapping (a record's config.yaml as
    training wrote it, or a configuration as the code that ran it resolves it) with ``RUN_ENTRIES`` set aside.
    Every other entry counts as written, none is added: two mappings have one key exactly when they hold the
    same entries with the same values, so a partial certificate (``reprokit certify --partial``) names the
    configurations it compared by the keys of their old code's resolution, which are the keys of that code's
    records of them."""
    text = json.dumps(without_entries(raw, RUN_ENTRIES), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"config key 1\0{text}".encode()).hexdigest()[:12]


def without_entries(raw: dict, dotted_keys) -> dict:
    """A copy of the config mapping ``raw`` less the dotted entries (``"train.seed"``) it holds."""
    kept = json.loads(json.dumps(raw))  # a deep copy of plain data
    for dotted in dotted_keys:
        *path, last = dotted.split(".")
        node = kept
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return kept


def record_version(meta: dict, package_dir: str | Path | None = None) -> tuple[int, str] | None:
    """(scheme, digest) of the code a run record ran. A scheme-2 record says so; a record naming a clean
    commit gets its scheme-2 digest from that commit's files (when the repository has it); otherwise the
    record's own scheme-1 digest. A run of a tree with uncommitted changes and no recorded digest is unknown."""
    if meta.get("code_version_scheme") == SCHEME and meta.get("code_version"):
        return SCHEME, meta["code_version"]
    git = meta.get("git") or {}
    if git.get("commit") and git.get("dirty") is False:
        version = code_version_at(git["commit"], package_dir, meta.get("method"), meta.get("dataset"))
        if version is not None:
            return SCHEME, version
    if meta.get("code_version"):
        return 1, meta["code_version"]
    return None


def read_certificates(folder: Path) -> list[dict]:
    """Every certificate (``*.json``) in ``folder``, in name order; a file that is not one is an error naming it."""
    certs = []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            cert = json.loads(path.read_text())
            pairs = [(p["old"], p["new"]) for p in cert["versions"]]
            restrictions = [p["configs"] for p in cert["versions"] if "configs" in p]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}: not a code-version certificate ({type(exc).__name__}: {exc}); expected JSON "
                             "with a 'versions' list of {{'old', 'new', ...}} digests, as `reprokit certify` writes")
        if not all(isinstance(v, str) for pair in pairs for v in pair):
            raise ValueError(f"{path}: every 'old' and 'new' of 'versions' must be a digest string")
        if not all(isinstance(keys, list) and all(isinstance(k, str) for k in keys) for keys in restrictions):
            raise ValueError(f"{path}: a 'configs' of 'versions' must be a list of config keys")
        certs.append(cert)
    return certs


def certificate_dir(package_dir: str | Path | None = None) -> Path:
    """Where certificates of bit-identical code versions live: ``docs/certificates`` of the repository."""
    return Path(package_dir or PACKAGE_DIR).parent / "docs" / "certificates"


class CodeVersions:
    """Today's code versions, cached, and the certificates that declare older versions bit-identical to newer
    ones (``reprokit certify``): a record is current when its digest is today's digest computed the same way,
    or a chain of certificates leads from it to today's. A partial certificate's step (a version pair with
    ``configs``) holds only for records of those configurations (:func:`config_key` of the record's config)."""

    def __init__(self, package_dir: str | Path | None = None, certificates: Path | None = None):
        self.package_dir = package_dir
        self._files = tree_files(package_dir)
        self._now: dict[tuple, str] = {}
        # old digest -> {new digest: the config keys the step holds for, None for every configuration}
        self.successors: dict[str, dict[str, frozenset | None]] = {}
        for cert in read_certificates(certificates or certificate_dir(package_dir)):
            for pair in cert["versions"]:  # the old commit's scheme-1 digest too: dirty scheme-1 records chain on
                keys = frozenset(pair["configs"]) if "configs" in pair else None
                for old in filter(None, (pair["old"], pair.get("old_scheme1"))):
                    steps = self.successors.setdefault(old, {})
                    held = steps.get(pair["new"], frozenset())  # what other certificates hold the step for
                    steps[pair["new"]] = None if keys is None or held is None else held | keys

    def today(self, scheme: int, method: str | None, dataset: str | None) -> str:
        key = (scheme, method, dataset if scheme == SCHEME else None)
        if key not in self._now:
            self._now[key] = (digest_of(self._files, method, dataset) if scheme == SCHEME
                              else scheme1_version(self._files, method))
        return self._now[key]

    def leads_to(self, old: str, new: str, key: str | None = None) -> bool:
        """Whether a chain of certificates leads from ``old`` to ``new`` for a record of configuration ``key``
        (:func:`config_key`): a partial certificate's step is taken only when ``key`` is among its keys, never
        for None (a record whose configuration is not known)."""
        seen, todo = set(), [old]
        while todo:
            version = todo.pop()
            if version == new:
                return True
            if version not in seen:
                seen.add(version)
                todo += [after for after, keys in self.successors.get(version, {}).items()
                         if keys is None or (key is not None and key in keys)]
        return False

    def standing(self, meta: dict, config: dict | None = None) -> str:
        """'same code' (the record's digest is today's, computed the same way), 'certified' (a chain of
        certificates leads from it to today's), 'stale', or 'unknown' (no digest can be had). ``config``: the
        record's configuration as its config.yaml holds it, which partial certificates need; without it their
        steps are not taken."""
        found = record_version(meta, self.package_dir)
        if found is None:
            return "unknown"
        scheme, version = found
        today = self.today(scheme, meta.get("method"), meta.get("dataset"))
        if version == today:
            return "same code"
        # a certificate carries an old commit's scheme-1 digest to a scheme-2 one
        now = today if scheme == SCHEME else self.today(SCHEME, meta.get("method"), meta.get("dataset"))
        key = config_key(config) if config is not None else None
        return "certified" if self.leads_to(version, now, key) else "stale"

    def is_current(self, meta: dict, config: dict | None = None) -> bool:
        return self.standing(meta, config) in ("same code", "certified")
