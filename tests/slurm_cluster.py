"""A throw-away one-node SLURM cluster for end-to-end tests (Debian 12's slurm-wlm 22.05 and munge 0.5).

Usage::

    reason = slurm_available()          # None, or why the cluster cannot be started here
    with local_slurm(tmp_path) as cluster:
        os.environ.update(cluster.env)  # or monkeypatch.setenv / subprocess env=
        ...sbatch --partition=cluster.partition ...

`local_slurm(workdir)` yields a `LocalSlurm` with

* ``workdir``   the directory holding everything (``slurm.conf``, ``state/``, ``spool/``, ``log/``, ``run/``, ``munge/``,
                ``bin/``)
* ``conf``      ``workdir / "slurm.conf"``
* ``env``       ``{"SLURM_CONF": str(conf), "PATH": "<workdir>/bin:$PATH"}``: all a process (or a subprocess)
                needs to use this cluster (PATH only for the sacct shim, see Accounting)
* ``partition`` ``"reprokit"`` (the default partition)
* ``nodename``  this host's short hostname, the one node
* ``cpus`` and ``real_memory`` (MiB) as configured for the node
* ``startup_s``  seconds from starting munged to the node being idle
* ``logs``      daemon name -> log file; ``log_tails()`` their last lines (also in the start-up error)
* ``run(*args)`` runs a SLURM client command with ``env`` and returns its stdout

How it is set up

* munged: always a private instance (foreground, ``--force``) on ``workdir/munge/munge.socket`` with its own key
  ``workdir/munge/munge.key`` (1024 random bytes, root-owned, mode 0600, created if missing); the system munged
  (``/run/munge``, ``/etc/munge/munge.key``) is neither used nor touched. ``--force`` is needed because munged
  refuses a socket whose directory is not world-traversable, and pytest's ``/tmp/pytest-of-root`` is mode 0700;
  only root processes (the daemons and root-submitted jobs) use the socket, so that is harmless.
  Its log is ``workdir/log/munged.stderr``. ``AuthInfo=socket=...`` in slurm.conf points the daemons and all client commands at that socket.
* slurmctld and slurmd run in the foreground (``-D``) as children of the test process, ``SlurmUser=root``,
  ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``, no cgroups, ``AccountingStorageType=
  accounting_storage/none`` (no slurmdbd), free TCP ports picked at start, the node's CPU layout taken from
  ``slurmd -C`` and ``RealMemory`` set to 3/4 of the detected memory. ``SlurmctldHost`` must be the real short
  hostname (slurmctld refuses to run otherwise); the addresses are pinned to 127.0.0.1 so no name resolution is
  needed.
* Start-up takes about 1-2 s (munged well under a second, node idle about 1 s after slurmd starts).
* Several clusters and restarts: every daemon gets ``REPROKIT_LOCAL_SLURM=<owner pid>:<owner start time>:<workdir>``
  in its environment. On start, daemons left behind by an owner that no longer exists (a killed pytest run) are
  terminated; clusters of live owners are not touched (they use other ports, sockets and directories). On exit,
  or on any failure during start-up, remaining jobs are cancelled and slurmd, slurmctld and the private munged
  are stopped (SIGTERM, then SIGKILL).

Accounting

The real ``sacct`` does not work here: with ``accounting_storage/none`` (no slurmdbd) it answers "Slurm
accounting storage is disabled" and exits 1. Its little-known ``--completion`` (``-c``) option does work, though: it
reads the job completion log that ``JobCompType=jobcomp/filetxt`` writes (``workdir/log/jobcomp.txt``) and supports
``-o JobID,State,NodeList --parsable2 -j ID``, listing finished jobs (COMPLETED, FAILED, CANCELLED, TIMEOUT ...)
but not pending or running ones. So `local_slurm` (unless ``sacct_shim=False``) puts a two-line ``sacct`` wrapper
that adds ``--completion`` in ``workdir/bin`` and prepends that to ``env["PATH"]``.

What that means for submitit (1.5.4), which polls ``sacct -o JobID,State,NodeList --parsable2 -j ...``:

* with the shim: no warnings; while a job is pending or running sacct lists nothing, which submitit reports as
  state UNKNOWN (counted as not done); once it ends, ``job.state``/``job.get_info()`` give the real SLURM state,
  and a job cancelled or killed before writing its result still becomes ``done()`` (its ``result()`` then raises
  ``UncompletedJobError``, after submitit's own 15 s wait for a result file).
* without it: every poll logs "Bypassing sacct error ..., status may be inaccurate." and the state stays UNKNOWN;
  ``job.done()`` and ``job.result()`` still work for jobs that finish, because they look at the result pickle the job
  writes (also for a job that raises: ``result()`` raises ``FailedJobError``), but a job killed by SLURM before
  writing it leaves ``job.wait()``/``job.result()`` polling forever.

``squeue --states=all`` also lists finished jobs, for ``MinJobAge`` (300 s).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

PARTITION = "reprokit"
BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "squeue", "scancel", "sinfo")
MARKER = "REPROKIT_LOCAL_SLURM"
DAEMONS = {"munged", "slurmctld", "slurmd", "slurmstepd"}
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/bin", "/bin"])


def _which(name: str) -> str | None:
    return shutil.which(name, path=_SEARCH_PATH)


def slurm_available() -> str | None:
    """None when a local cluster can be started here, otherwise the reason it cannot."""
    missing = [name for name in BINARIES if _which(name) is None]
    if missing:
        return (f"SLURM/munge binaries not found: {', '.join(missing)} "
                "(apt-get install slurm-wlm munge; scripts/bootstrap.sh does it when run as root)")
    if os.geteuid() != 0:
        return "the local SLURM cluster needs root (slurmd runs jobs as the submitting user, SlurmUser=root)"
    return None


@dataclass
class LocalSlurm:
    workdir: Path
    conf: Path
    env: dict[str, str]
    partition: str
    nodename: str
    cpus: int
    real_memory: int
    logs: dict[str, Path] = field(default_factory=dict)
    startup_s: float = 0.0

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for name, path in self.logs.items():
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(no log)"]
            out.append(f"--- {name}: {path}\n" + "\n".join(text))
        return "\n".join(out)

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """Run a SLURM client command (sinfo, squeue, scontrol, ...) against this cluster; returns stdout."""
        env = {**os.environ, **self.env}
        exe = shutil.which(args[0], path=os.pathsep.join([env.get("PATH", ""), _SEARCH_PATH])) or args[0]
        proc = subprocess.run([exe, *args[1:]], env=env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout


# ----------------------------------------------------------------------------------------------------- helpers

def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, starttime in clock ticks since boot


def _marked_daemons() -> list[tuple[int, str]]:
    """(pid, marker value) of every munged/slurm* process started by this module (any owner)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() not in DAEMONS:
                continue
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(MARKER.encode() + b"="):
                found.append((int(entry.name), item.split(b"=", 1)[1].decode(errors="replace")))
                break
    return found


def _terminate(pids: list[int], grace: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _step_daemons(workdir: Path) -> list[int]:
    """slurmstepd processes of the cluster in `workdir` and everything below them (the jobs' processes).

    slurmstepd starts with an empty environment, so it carries no marker; it does keep the slurmd log open."""
    slurmd_log = str(workdir / "log" / "slurmd.log")
    children: dict[int, list[int]] = {}
    steps = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(pid)
            if (entry / "comm").read_text().strip() == "slurmstepd" and any(
                    os.readlink(fd) == slurmd_log for fd in (entry / "fd").iterdir()):
                steps.append(pid)
        except OSError:
            continue
    found, todo = [], list(steps)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _kill_stale_clusters() -> list[int]:
    """Stop clusters whose owning process is gone (left by a killed test run): cancel their jobs if their
    slurmctld still answers, then terminate their daemons and job steps. Returns the pids terminated."""
    stale: dict[str, list[int]] = {}
    for pid, value in _marked_daemons():
        owner, _, rest = value.partition(":")
        started, _, workdir = rest.partition(":")
        if not owner.isdigit() or _start_time(int(owner)) != started:
            stale.setdefault(workdir, []).append(pid)
    killed = []
    for workdir, pids in stale.items():
        conf = Path(workdir) / "slurm.conf"
        if conf.exists():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([_which("scancel") or "scancel", f"--partition={PARTITION}"],
                               env={**os.environ, "SLURM_CONF": str(conf)}, capture_output=True, timeout=10)
        pids = pids + _step_daemons(Path(workdir))
        _terminate(pids)
        killed += pids
    return killed


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _hardware() -> dict[str, int]:
    """The node as slurmd sees it (`slurmd -C`), falling back to os.cpu_count() and /proc/meminfo."""
    hw: dict[str, int] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([_which("slurmd") or "slurmd", "-C"], capture_output=True, text=True, timeout=20).stdout
        for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory"):
            m = re.search(rf"\b{key}=(\d+)", out)
            if m:
                hw[key] = int(m.group(1))
    if "CPUs" not in hw:
        hw = {"CPUs": len(os.sched_getaffinity(0))}
    if "RealMemory" not in hw:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        hw["RealMemory"] = int(m.group(1)) // 1024 if m else 1024
    return hw


def _write_munge_key(path: Path) -> None:
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))
    os.chown(path, os.geteuid(), os.getegid())  # munged wants the key owned by its own user ...
    os.chmod(path, 0o600)  # ... and readable by nobody else


def _slurm_conf(workdir: Path, nodename: str, hw: dict[str, int], ctld_port: int, slurmd_port: int,
                munge_socket: Path) -> str:
    layout = " ".join(f"{k}={hw[k]}" for k in ("Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
                      if k in hw)
    lines = [
        "# written by tests/slurm_cluster.py: a one-node cluster for end-to-end tests",
        "ClusterName=reprokit",
        f"SlurmctldHost={nodename}(127.0.0.1)",
        f"SlurmctldPort={ctld_port}",
        f"SlurmdPort={slurmd_port}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        f"StateSaveLocation={workdir / 'state'}",
        f"SlurmdSpoolDir={workdir / 'spool'}",
        f"SlurmctldPidFile={workdir / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={workdir / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={workdir / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={workdir / 'log' / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        f"TmpFS={workdir / 'tmp'}",
        f"PlugStackConfig={workdir / 'plugstack.conf'}",
        "MailProg=/bin/true",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={workdir / 'log' / 'jobcomp.txt'}",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "SchedulerType=sched/backfill",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "SlurmdParameters=config_overrides",
        "ReturnToService=2",
        "SlurmctldTimeout=10",
        "SlurmdTimeout=10",
        "MessageTimeout=5",
        "TCPTimeout=2",
        "BatchStartTimeout=10",
        "InactiveLimit=0",
        "KillWait=2",
        "MinJobAge=300",
        "Waittime=0",
        f"NodeName={nodename} NodeAddr=127.0.0.1 NodeHostname={nodename} CPUs={hw['CPUs']} {layout} "
        f"RealMemory={max(1, hw['RealMemory'] * 3 // 4)} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={nodename} Default=YES MaxTime=INFINITE State=UP",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------------- cluster

@contextlib.contextmanager
def local_slurm(workdir: Path, start_timeout: float = 60.0, sacct_shim: bool = True) -> Iterator[LocalSlurm]:
    """Start munged, slurmctld and slurmd for a one-node cluster under `workdir`; stop them all on exit.

    With `sacct_shim` (the default), ``env["PATH"]`` starts with ``workdir/bin``, whose ``sacct`` runs the real one
    with ``--completion`` (see the module docstring)."""
    reason = slurm_available()
    if reason:
        raise RuntimeError(f"cannot start a local SLURM cluster: {reason}")
    workdir = Path(workdir).resolve()
    for sub in ("state", "spool", "log", "run", "tmp"):
        (workdir / sub).mkdir(parents=True, exist_ok=True)
    munge_dir = workdir / "munge"
    munge_dir.mkdir(exist_ok=True)
    munge_dir.chmod(0o711)  # munged wants the socket directory searchable by all, writable by its owner only
    (workdir / "plugstack.conf").touch()  # keeps /etc/slurm/plugstack.conf (if any) out of it
    _kill_stale_clusters()

    nodename = socket.gethostname().split(".")[0]
    hw = _hardware()
    ctld_port, slurmd_port = _free_ports(2)
    munge_socket = munge_dir / "munge.socket"
    key = munge_dir / "munge.key"
    _write_munge_key(key)
    conf = workdir / "slurm.conf"
    conf.write_text(_slurm_conf(workdir, nodename, hw, ctld_port, slurmd_port, munge_socket))
    log = workdir / "log"
    env = {"SLURM_CONF": str(conf)}
    if sacct_shim and _which("sacct"):
        shim = workdir / "bin" / "sacct"
        shim.parent.mkdir(exist_ok=True)
        shim.write_text("#!/bin/sh\n# written by tests/slurm_cluster.py: no slurmdbd here, so sacct answers from the job\n"
                        f"# completion log (JobCompType=jobcomp/filetxt); running and pending jobs are not listed\n"
                        f'exec {_which("sacct")} --completion "$@"\n')
        shim.chmod(0o755)
        env["PATH"] = os.pathsep.join([str(shim.parent), os.environ.get("PATH", os.defpath)])
    cluster = LocalSlurm(
        workdir=workdir, conf=conf, env=env, partition=PARTITION, nodename=nodename,
        cpus=hw["CPUs"], real_memory=max(1, hw["RealMemory"] * 3 // 4),
        logs={"munged": log / "munged.stderr", "slurmctld": log / "slurmctld.log", "slurmd": log / "slurmd.log",
              "slurmctld stderr": log / "slurmctld.stderr", "slurmd stderr": log / "slurmd.stderr"})
    marker = f"{os.getpid()}:{_start_time(os.getpid())}:{workdir}"
    daemon_env = {**os.environ, **cluster.env, MARKER: marker}
    procs: dict[str, subprocess.Popen] = {}

    def spawn(name: str, cmd: list[str]) -> None:
        with open(log / f"{name}.stderr", "ab") as out:
            procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                           env=daemon_env, cwd=workdir, start_new_session=True)

    def fail(what: str) -> None:
        raise RuntimeError(f"local SLURM cluster: {what}\n{cluster.log_tails()}")

    try:
        t0 = time.monotonic()
        for leftover in ("munge.socket", "munge.socket.lock", "munged.pid"):  # from an earlier run in this workdir
            (munge_dir / leftover).unlink(missing_ok=True)
        spawn("munged", [_which("munged"), "--foreground", "--force", f"--socket={munge_socket}",
                         f"--key-file={key}", f"--pid-file={munge_dir / 'munged.pid'}",
                         f"--seed-file={munge_dir / 'munged.seed'}"])  # in the foreground it logs to stderr
        deadline = time.monotonic() + 15
        while not (munge_socket.exists() and (munge_dir / "munged.pid").exists()):  # pid file comes last
            if procs["munged"].poll() is not None or time.monotonic() > deadline:
                fail("munged did not start")
            time.sleep(0.05)

        spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(conf)])
        spawn("slurmd", [_which("slurmd"), "-D", "-f", str(conf), "-N", nodename])
        deadline = time.monotonic() + start_timeout
        state = ""
        while True:
            for name, proc in procs.items():
                if proc.poll() is not None:
                    fail(f"{name} exited with status {proc.returncode} during start-up")
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                state = cluster.run("sinfo", "--noheader", "--Node", f"--partition={PARTITION}",
                                    "--format=%T", timeout=10).strip()
            if state == "idle":
                break
            if time.monotonic() > deadline:
                fail(f"node {nodename} not idle after {start_timeout:.0f} s (sinfo state: {state or 'no answer'})")
            time.sleep(0.25)
        cluster.startup_s = time.monotonic() - t0
        yield cluster
    finally:
        _shutdown(cluster, procs, marker)


def _shutdown(cluster: LocalSlurm, procs: dict[str, subprocess.Popen], marker: str) -> None:
    ctld = procs.get("slurmctld")
    if ctld is not None and ctld.poll() is None:
        with contextlib.suppress(Exception):
            cluster.run("scancel", f"--partition={cluster.partition}", check=False, timeout=10)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and cluster.run(
                    "squeue", "--noheader", f"--partition={cluster.partition}", "--format=%i", timeout=10).strip():
                time.sleep(0.25)
    for name in ("slurmd", "slurmctld"):
        proc = procs.get(name)
        if proc is not None:
            _terminate([proc.pid], grace=10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    # job step daemons (and their jobs) of this cluster that outlived slurmd
    munged = procs.get("munged")
    _terminate(_step_daemons(cluster.workdir)
               + [pid for pid, value in _marked_daemons() if value == marker and (munged is None or pid != munged.pid)])
    if munged is not None:
        _terminate([munged.pid])
        with contextlib.suppress(subprocess.TimeoutExpired):
            munged.wait(timeout=5)
