"""Command line: ``reprokit train | eval | sweep | figures | data | pretrain | results | archive | replay``."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path


def _train(args) -> int:
    from reprokit.configure import load_config
    from reprokit.engine.train import train

    cfg = load_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-{cfg.hash()}"
    if (out / "checkpoint.pt").is_file() and (out / "meta.json").is_file():  # a requeued job's log shows it
        print(f"{out}: resuming from its checkpoint (step {json.loads((out / 'meta.json').read_text()).get('step')})",
              flush=True)
    summary = train(cfg, out)
    print(f"{out}: mIoU {100 * summary['miou']:.2f}")
    return 0


def _certify(args) -> int:
    from reprokit.experiments.certify import certify, sweep_candidates

    sweeps = args.sweep or sorted(Path("params/sweeps").glob("*.yaml"))
    report = certify(args.old, args.new, sweep_candidates(sweeps), steps=args.steps, jobs=args.jobs,
                     out=Path(args.out) if args.out else None, partial=args.partial)
    if args.partial and report.get("certificate") and not report["identical"]:
        print(f"partial certificate: {report['certificate']}: it holds for the bit-identical configurations only; "
              f"rerun the {len(report['moved'])} moved ones (above)")
        return 0
    if not report["identical"]:
        print("not certified: the codes differ (above); rerun what the change moves", file=sys.stderr)
        return 1
    print(f"certificate: {report['certificate']}" if report.get("certificate")
          else "nothing to certify: no configuration runs changed code")
    return 0


def _eval(args) -> int:
    from reprokit.engine.reeval import reevaluate

    summary = reevaluate(Path(args.run_dir), args.set)
    print(f"{args.run_dir}: mIoU {100 * summary['miou']:.2f} ({summary['eval']['mode']})")
    return 0


def _cam_seed(args) -> int:
    from reprokit.runs.cam_seed import check_admissible, measure_cam_seed

    for run in args.run_dir:
        s = measure_cam_seed(Path(run))
        bg = s["all_background"]
        print(f"{run}: CAM seed ({s['seed']}, {s['images']} training images) accuracy {s['accuracy']:.3f} on "
              f"{100 * s['coverage']:.1f} % of pixels (all-background {bg['accuracy']:.3f} there, "
              f"{bg['accuracy_all']:.3f} on all), foreground IoU {s['fg_iou']:.3f}")
    if args.check:
        losing = check_admissible(args.run_dir)
        if losing:
            print(f"not admissible: the CAM seed does not beat all-background in pixel accuracy in "
                  f"{', '.join(losing)}", file=sys.stderr)
            return 1
        print(f"admissible: the CAM seed beats all-background in every one of {len(args.run_dir)} runs")
    return 0


def _data_check(args) -> int:
    from reprokit.configure import load_config
    from reprokit.data.check import check_data
    from reprokit.engine.loop import show_progress

    cfg = load_config(args.config, args.set)
    print(f"reprokit data check: {args.config} ({cfg.data.dataset} at {cfg.data.root}, "
          f"data.num_classes = {cfg.data.num_classes})")
    report = check_data(cfg.data, progress=show_progress())
    print(report.format(args.first))
    return 0 if report.ok else 1


def _data(args) -> int:
    from reprokit.data.digits import DigitScenesSpec, build_digit_scenes

    spec = DigitScenesSpec(n_train=args.n_train, n_val=args.n_val, size=args.size, imbalance=args.imbalance,
                           seed=args.seed)
    meta = build_digit_scenes(args.out, spec)
    inst = meta["splits"]["train"]["instances_per_class"][1:]
    print(f"{args.out}: {spec.n_train} train / {spec.n_val} val scenes in {meta['build_seconds']:.1f} s; "
          f"digit instances head/tail = {max(inst)}/{min(inst)}")
    return 0


def _pretrain(args) -> int:
    import json

    import torch

    from reprokit.configure import load_config
    from reprokit.models.pretrain import ensure_pretrained
    from reprokit.engine.loop import show_progress
    from reprokit.runs.origin import backbone_description

    cfg = load_config(args.config, args.set)
    torch.set_num_threads(args.threads)
    before = backbone_description(cfg.model)["sha256"]
    cached = before is not None and not args.force
    path = ensure_pretrained(cfg.model, progress=show_progress(), force=args.force)
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    digest = backbone_description(cfg.model)["sha256"]
    built = f"built in {meta['wall_seconds']:.1f} s"
    print(f"{path}: held-out top-1 {100 * meta['heldout_top1']:.2f} %, sha256 {digest}, "
          f"{f'cached ({built})' if cached else built}")
    if args.force and before is not None:
        # the repository ships the weights its records start from; a rebuild tells whether this machine
        # reproduces them (another processor builds other weights: docs/measurements.md, "Another processor")
        print(f"the weights it replaced: sha256 {before}, "
              + ("the same" if digest == before else "DIFFERENT: `git checkout data/pretrained` restores the "
                 "shipped ones"))
    return 0


def _print_pairs(df, pairs: list[list[str]], root) -> bool:
    """Print config A − config B paired by seed for each (A, B) of ``pairs``; False when a config has no run."""
    from reprokit.runs.stats import format_difference, format_seed_differences, paired_difference
    from reprokit.viz.tables import seed_values

    names = set(df["name"])
    for a, b in pairs:
        for name in (a, b):
            if name not in names:
                print(f"--pair {a} {b}: no finished run of config {name!r} under {root} (configs there: "
                      f"{', '.join(sorted(names))})", file=sys.stderr)
                return False
        diff = paired_difference(seed_values(df, a), seed_values(df, b))
        print(f"{a} − {b} (mIoU points, paired by seed): {format_difference(diff)}; per seed: "
              f"{format_seed_differences(diff)}")
    return True


def _results(args) -> int:
    from reprokit.codeversion import SCHEME, CodeVersions
    from reprokit.runs.results import NO_MACHINE, compare_runs, load_runs, machine_counts, summary_table

    df = load_runs(args.root)
    if df.empty:
        print(f"no finished runs under {args.root}", file=sys.stderr)
        return 1
    if args.pair:
        if not _print_pairs(df, args.pair, args.root):
            return 2
    elif args.against:
        table = compare_runs(df, load_runs(args.against))
        if table.empty:
            print(f"no run id of {args.root} is also under {args.against}", file=sys.stderr)
            return 1
        table[["miou", "miou_reference"]] = (100 * table[["miou", "miou_reference"]]).round(2)
        print(f"mIoU (%) of {args.root} against the same cells under {args.against}:")
        print(table.to_string(index=False))
    elif args.versions:
        by = [df["path"].map(lambda p: Path(p).relative_to(args.root).parts[0] if len(Path(p).relative_to(
            args.root).parts) > 1 else "."), "code_scheme", "standing"]
        table = df.groupby(by, dropna=False).size().unstack("standing", fill_value=0)
        print("runs by folder and by how their code version compares with today's package (code_scheme: the "
              "digest scheme compared; 'certified': bit-identical by a certificate in docs/certificates)")
        print(table.rename_axis(index=["folder", "code_scheme"]).to_string())
    elif args.per_run:
        df = df.assign(miou=(100 * df["miou"]).round(2)).sort_values(["name", "run_id"])
        listed = df.assign(machine=df["machine"].fillna(NO_MACHINE))
        print(listed[["run_id", "name", "seed", "miou", "stale", "standing", "machine"]].to_string(index=False))
    else:  # percent, as in every table
        table = summary_table(df.assign(miou=100 * df["miou"]), ["name", "method"]).round(2)
        print("mIoU (%) per experiment: mean and std over its runs, and how many of them are stale")
        print(table.rename(columns={"mean": "mIoU mean", "std": "mIoU std", "count": "runs"}).to_string(index=False))
    stale = int(df["stale"].sum())
    today = CodeVersions()
    versions = ", ".join(f"{m} on {d} {today.today(SCHEME, m, d)}"
                         for m, d in sorted(set(zip(df["method"], df["dataset"]))))
    if stale:
        print(f"\n{stale} of {len(df)} runs stale (column 'stale'): they ran other code than the current package "
              f"(code versions {versions}), or code that cannot be identified, so this code may give other "
              "numbers; rerun them before quoting them (in a sweep: --rerun-stale), or check them with "
              "reprokit replay")
    else:
        print(f"\nall {len(df)} runs ran the current package's code (code versions {versions})")
    machines = machine_counts(df)
    if len(machines) > 1:
        print(f"runs of several machines (column 'machine' with --per-run): "
              f"{', '.join(f'{n} on {m}' for m, n in machines.items())}; another processor alone changes the numbers")
    return 0


def _archive(args) -> int:
    from reprokit.runs.results import archive_runs

    copied = archive_runs(args.root, args.dest)
    print(f"archived the records of {len(copied)} runs from {args.root} into {args.dest}")
    return 0 if copied else 1


def _replay(args) -> int:
    from reprokit.records import write_json_atomic
    from reprokit.runs.replay import replay, verdict_line

    if args.steps < 1:
        print(f"reprokit: error: --steps must be a positive step count, got {args.steps}", file=sys.stderr)
        return 2
    results = []
    for record in args.records:
        result = replay(record, args.steps)
        print(verdict_line(result), flush=True)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            write_json_atomic(Path(args.out) / f"{result['run_id']}.json", result)
        results.append(result)
    return 0 if all(r["identical"] for r in results) else 1


def _sweep(args) -> int:
    from reprokit.experiments.sweep import run_sweep, sweep_report

    if args.status:
        rows = sweep_report(args.sweep_file)
        width = max(len(r["cell"]) for r in rows) if rows else 0
        for r in rows:
            print(f"{r['cell']:{width}s}  {r['state']:9s}  {r['detail']}".rstrip())
        counts = {s: sum(r["state"] == s for r in rows) for s in dict.fromkeys(r["state"] for r in rows)}
        print(f"{len(rows)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return 0
    devices = args.devices.split(",") if args.devices else None
    results = run_sweep(args.sweep_file, args.jobs, devices, args.stagger, rerun_stale=args.rerun_stale,
                        executor=args.executor, slurm=args.slurm, wait_for_jobs=not args.no_wait,
                        if_running=args.if_running)
    return 1 if any(not r["ok"] for r in results) else 0


def _figures(args) -> int:
    from reprokit.figures import regenerate
    from reprokit.viz.presets import preset
    from reprokit.viz.registry import select

    try:  # refuse an unknown preset or artefact before any notebook starts
        preset(args.preset)
        select(args.only)
    except ValueError as exc:
        print(f"reprokit: error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    params: dict[str, dict] = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        artefact, dot, name = key.partition(".")
        if not (sep and dot and name):
            print(f"reprokit: error: --param {item!r}: expected ARTEFACT.NAME=VALUE, e.g. "
                  "summary.reference=docs/runs/benchmark", file=sys.stderr)
            return 2
        params.setdefault(artefact, {})[name] = value
    errors = regenerate(args.runs, args.out, args.preset, args.jobs, args.only, params=params)
    print(f"figures: {sum(e is None for e in errors.values())} of {len(errors)} artefacts built in "
          f"{time.perf_counter() - start:.1f} s into {args.out}")
    return 1 if any(e and not e.startswith("skipped") for e in errors.values()) else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reprokit", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and evaluate one experiment (resumes if --out holds a checkpoint)")
    t.add_argument("--config", help="YAML parameter file (params/...)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.iters=50")
    t.add_argument("--out", help="run directory (default runs/<name>-<config hash>)")
    t.set_defaults(func=_train)
    e = sub.add_parser("eval", help="re-evaluate a run directory's checkpoint")
    e.add_argument("run_dir")
    e.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="eval overrides, e.g. eval.mode=sliding")
    e.set_defaults(func=_eval)
    cs = sub.add_parser("cam-seed", help="score image-label runs' CAM pseudo-masks on their training images "
                                         "against the hidden masks, and against all-background (cam_seed.json)")
    cs.add_argument("run_dir", nargs="+")
    cs.add_argument("--check", action="store_true", help="exit 1 unless every run's seed beats all-background in "
                    "pixel accuracy (the admission rule of an image-label protocol, on the CAM baseline's seeds)")
    cs.set_defaults(func=_cam_seed)
    sw = sub.add_parser("sweep", help="run a grid of experiments through the train notebook (papermill)")
    sw.add_argument("sweep_file")
    sw.add_argument("--jobs", type=int, default=1, help="cells executed at once (one process each)")
    sw.add_argument("--devices", help="comma-separated GPU ids; job i is pinned to device i mod len")
    sw.add_argument("--stagger", type=float, default=3.0, help="seconds between the first kernel starts")
    sw.add_argument("--rerun-stale", action="store_true",
                    help="also rerun finished cells whose run ran other code (old run moved aside)")
    sw.add_argument("--executor", choices=["local", "slurm"], default="local",
                    help="local processes (default) or one SLURM job per cell, submitted through submitit")
    sw.add_argument("--slurm", action="append", default=[], metavar="KEY=VALUE",
                    help="SLURM option over the sweep file's slurm block, e.g. partition=gpu, time=240")
    sw.add_argument("--no-wait", action="store_true", help="with --executor slurm: submit and return")
    sw.add_argument("--if-running", choices=["skip", "wait"], default="skip",
                    help="a cell another process on this machine is training (another sweep of the file, a "
                    "reprokit train on its directory): skip it (default), or wait and run it after that process "
                    "unless it finished the cell")
    sw.add_argument("--status", action="store_true",
                    help="show every cell's state (done, queued, running, failed, stale, new); runs nothing")
    sw.set_defaults(func=_sweep)
    fg = sub.add_parser("figures", help="rebuild every table and figure from run directories (no training)")
    fg.add_argument("--runs", default="runs/quick")
    fg.add_argument("--out", default="figures")
    fg.add_argument("--preset", default="digits", help="digits | cityscapes | voc")
    fg.add_argument("--jobs", type=int, default=2)
    fg.add_argument("--only", nargs="*", metavar="ARTEFACT",
                    help="artefacts to build, e.g. summary table4 fig7 (default: all)")
    fg.add_argument("--param", action="append", default=[], metavar="ARTEFACT.NAME=VALUE",
                    help="an artefact's own notebook parameter, e.g. summary.reference=docs/runs/benchmark")
    fg.set_defaults(func=_figures)
    d = sub.add_parser("data", help="build the digit scenes, or check a configured data set")
    dsub = d.add_subparsers(dest="action", required=True)
    dc = dsub.add_parser("check", help="read every file of the configured splits and report bad ones "
                                       "(exit status 1 when any is bad)")
    dc.add_argument("config", help="YAML parameter file (its data block)")
    dc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. data.root=...")
    dc.add_argument("--first", type=int, default=10, help="problems listed per kind (default 10)")
    dc.set_defaults(func=_data_check)
    dg = dsub.add_parser("digits", help="build the embedded digit-scenes data set (VOC layout)")
    dg.add_argument("--out", default="data/digits")
    dg.add_argument("--n-train", type=int, default=2000)
    dg.add_argument("--n-val", type=int, default=500)
    dg.add_argument("--size", type=int, default=48)
    dg.add_argument("--imbalance", type=float, default=20.0)
    dg.add_argument("--seed", type=int, default=0)
    dg.set_defaults(func=_data)
    pt = sub.add_parser("pretrain", help="train (or find cached) glyph-pretrained weights for the config's backbone")
    pt.add_argument("--config", default="params/digits/base.yaml", help="YAML parameter file (its model block)")
    pt.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.width=32")
    pt.add_argument("--force", action="store_true", help="retrain even when the weights are cached")
    pt.add_argument("--threads", type=int, default=2, help="torch CPU threads (the time budget assumes 2)")
    pt.set_defaults(func=_pretrain)
    r = sub.add_parser("results", help="summarise finished runs under a folder")
    r.add_argument("root", nargs="?", default="runs")
    r.add_argument("--per-run", action="store_true", help="one line per run (mIoU in percent) instead of per group")
    r.add_argument("--versions", action="store_true", help="count the runs per folder by how their code version "
                   "compares with today's: same code, certified, stale, unknown")
    r.add_argument("--against", metavar="OTHER_ROOT",
                   help="compare with the same cells (run ids) under OTHER_ROOT: paired differences per config")
    r.add_argument("--pair", nargs=2, action="append", metavar=("A", "B"),
                   help="config A minus config B paired by seed, mean [95 %% t-interval] and per seed; repeatable")
    r.set_defaults(func=_results)
    a = sub.add_parser("archive", help="copy finished runs' small records (no checkpoints) to commit them")
    a.add_argument("root")
    a.add_argument("dest")
    a.set_defaults(func=_archive)
    cf = sub.add_parser("certify", help="train the configurations a change of training code touches on the old "
                        "and the new code; certify the change when every run is bit-identical")
    cf.add_argument("old", help="the older commit")
    cf.add_argument("new", nargs="?", help="the newer commit (default: the working tree)")
    cf.add_argument("--sweep", action="append", default=[], metavar="FILE",
                    help="sweep file whose digits configurations are compared (repeatable; default: every sweep "
                    "file of params/sweeps)")
    cf.add_argument("--steps", type=int, help="steps per run (default: the fewest, at least 40, that cross every "
                    "phase boundary of the configuration)")
    cf.add_argument("--jobs", type=int, default=2, choices=(1, 2), help="run the old and the new code side by side "
                    "(2, one thread each) or one after the other")
    cf.add_argument("--out", help="folder of the certificate (default docs/certificates)")
    cf.add_argument("--partial", action="store_true", help="compare every configuration and certify the "
                    "bit-identical ones even when others differ: a method's version pair then holds only for "
                    "the records of those configurations; the moved ones are listed")
    cf.set_defaults(func=_certify)
    rp = sub.add_parser("replay", help="retrain recorded runs' first steps with the current code and check that "
                                       "every logged value comes out bit for bit the same")
    rp.add_argument("records", nargs="+", metavar="RUN_DIR", help="run directories or archived records")
    rp.add_argument("--steps", type=int, required=True, help="replay up to this step of each run's schedule")
    rp.add_argument("--out", help="folder for one <run_id>.json verdict per record (e.g. docs/runs/replay)")
    rp.set_defaults(func=_replay)
    return p


_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Repairs of a run directory are news for the user, not for a developer: no source location."""
    from reprokit.engine.rundir import RunDirWarning

    if issubclass(category, RunDirWarning):
        print(f"reprokit: warning: {message}", file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


# the commands whose speed the allocator decides (reprokit.experiments.allocator)
TRAINING_COMMANDS = ("train", "pretrain", "replay")


def main(argv: list[str] | None = None) -> int:
    from reprokit.experiments.allocator import restart_with_allocator
    from reprokit.config import ConfigError

    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    if argv is None and args.command in TRAINING_COMMANDS:  # a command line, not a call from Python:
        try:  # restarted as it was started (interpreter options too), before torch is imported
            restart_with_allocator(sys.orig_argv)
        except ConfigError as exc:
            return _input_error(exc)
    from reprokit.data.errors import DataError
    from reprokit.engine.checkpoint import CheckpointError
    from reprokit.engine.rundir import RunDirError, RunDirLocked, RunWriteError
    from reprokit.experiments.certify import CertifyError
    from reprokit.runs.replay import ReplayError

    try:
        return args.func(args)
    except (RunDirLocked, RunWriteError) as exc:  # not bad input: another writer, a full disk
        print(f"reprokit: error: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, DataError, CheckpointError, RunDirError, ReplayError, CertifyError) as exc:
        return _input_error(exc)


def _input_error(exc: Exception) -> int:
    print(f"reprokit: error: {exc}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
