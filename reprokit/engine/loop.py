"""The training loop shared by every method: optimiser, poly LR, AMP, DDP, EMA timing, logging,
atomic checkpoints with exact resume, and the final evaluation.

What the loop writes besides its checkpoints (the run's config, meta, metrics and evaluation files) goes
through a record object it is handed (:class:`reprokit.engine.rundir.RunRecord`), called at fixed points and
never read back: so the code that records runs is not code a run executes to compute its numbers, and its
edits leave every run's code version alone (:mod:`reprokit.codeversion` starts from this module)."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from reprokit.config import Config, ConfigError
from reprokit.data.datasets import SegDataset, class_names, collate, resolve_splits
from reprokit.data import dataset
from reprokit.data.weak_source import ensure_weak_labels
from reprokit.data.sampler import StepBatchSampler
from reprokit.engine.checkpoint import (FORMAT, check_written_by, load_checkpoint, rng_state, save_atomic,
                                       set_rng_state)
from reprokit.engine.distributed import DistInfo, all_gather_floats, barrier, init_distributed
from reprokit.engine.ema import ema_update
from reprokit.engine.evaluate import eval_summary, evaluate, protocol_file
from reprokit.engine.optim import build_optimizer, poly_scheduler
from reprokit.methods import build_method

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/Inf; the run stopped and the last good checkpoint was kept."""


def seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_determinism(cfg: Config) -> None:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def total_iterations(cfg: Config, n_labeled: int, n_unlabeled: int, world_size: int) -> int:
    """``train.iters``, or ``train.epochs`` x (unlabeled images // global batch) as in STPG/CPS
    (labeled images when the method uses no unlabeled data)."""
    if cfg.train.iters is not None:
        return cfg.train.iters
    per_epoch_pool = n_unlabeled or n_labeled
    batch = (cfg.data.unlabeled_batch_size or cfg.data.batch_size) if n_unlabeled else cfg.data.batch_size
    return cfg.train.epochs * max(1, per_epoch_pool // (batch * world_size))


def _to_device(batch: dict, device: torch.device, channels_last: bool) -> dict:
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if channels_last and v.dim() == 4:
                v = v.contiguous(memory_format=torch.channels_last)
        out[k] = v
    return out


def _loader(dataset, batch: int, seed: int, stream: int, start: int, total: int, dist: DistInfo, workers: int):
    sampler = StepBatchSampler(len(dataset), batch, seed, stream, start, total, dist.rank, dist.world_size)
    # a private generator: creating the iterator must not draw from the global RNG that resume restores
    generator = torch.Generator().manual_seed(seed * 100 + stream)
    return iter(torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                                            persistent_workers=workers > 0, generator=generator))


def show_progress() -> bool:
    """Progress bars in terminals and notebooks, quiet in batch mode (override: REPROKIT_PROGRESS=0/1)."""
    forced = os.environ.get("REPROKIT_PROGRESS")
    if forced is not None:
        return forced == "1"
    import sys

    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _scalar(v) -> float:
    return float(v.detach().float().mean()) if isinstance(v, torch.Tensor) else float(v)


class TrainingLoop:
    """One training run whose checkpoints live in ``run_dir``; rerunning on the same directory resumes from its
    checkpoint. ``record`` writes the rest of the run's record (:class:`reprokit.engine.rundir.RunRecord`)."""

    def __init__(self, cfg: Config, run_dir: str | Path, record, dist: Optional[DistInfo] = None):
        self.cfg, self.run_dir, self.record = cfg, Path(run_dir), record
        self.dist = dist or init_distributed(cfg.train.device)
        self.ckpt_path = self.run_dir / "checkpoint.pt"
        configure_determinism(cfg)
        seed_everything(cfg.train.seed)
        prepare = dataset(cfg.data.dataset).prepare  # a data set built on first use (the digit scenes)
        if prepare is not None and self.dist.is_main:
            prepare(cfg.data)
        barrier()
        # data and method are read and checked before the run directory is touched: bad input leaves no trace
        self.splits = resolve_splits(cfg.data)
        if self.dist.is_main:
            ensure_weak_labels(cfg.data, self.splits.labeled)
        barrier()
        record.check_data(self.splits, progress=self.dist.is_main and show_progress())
        self.class_names = class_names(cfg.data)
        self.method = build_method(cfg, cfg.data.num_classes).to(self.dist.device)
        if self.method.uses_unlabeled and not self.splits.unlabeled:
            raise ConfigError(f"method {cfg.method_name!r} needs unlabeled data: set data.labeled_fraction, "
                              "data.labeled_count or data.unlabeled_list")
        if self.dist.is_main:
            record.prepare()
        barrier()
        if cfg.model.sync_bn and self.dist.enabled and self.dist.device.type == "cuda":
            # SyncBN is GPU-only in PyTorch; on CPU/gloo each rank keeps its own batch statistics
            self.method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.method)
        if cfg.train.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)
        ub = cfg.data.unlabeled_batch_size or cfg.data.batch_size
        self.unlabeled_batch = ub * self.method.unlabeled_batches
        n_unlabeled = len(self.splits.unlabeled) if self.method.uses_unlabeled else 0
        self.total = total_iterations(cfg, len(self.splits.labeled), n_unlabeled, self.dist.world_size)
        self.method.set_total_steps(self.total)
        self.optimizer = build_optimizer(self.method.students(), cfg.optim)
        self.scheduler = poly_scheduler(self.optimizer, self.total, cfg.optim.poly_power, cfg.optim.warmup_iters)
        self.amp_dtype = AMP_DTYPES[cfg.train.amp] if self.dist.device.type == "cuda" or cfg.train.amp == "bf16" else None
        self.scaler = torch.amp.GradScaler(self.dist.device.type, enabled=cfg.train.amp == "fp16"
                                           and self.dist.device.type == "cuda")
        self.start_step = 0
        if self.ckpt_path.is_file():
            self._restore(load_checkpoint(self.ckpt_path))
        # training randomness (dropout, CutMix boxes) differs per rank; init above is identical on all ranks
        if self.start_step == 0:
            seed_everything(cfg.train.seed * 1000 + self.dist.rank + 1)
        # what the loop calls for a step: the method itself, or its DDP wrapper when several processes train
        self.step_module = self.method
        if self.dist.enabled:
            self.step_module = DistributedDataParallel(
                self.method, device_ids=[self.dist.device.index] if self.dist.device.type == "cuda" else None,
                find_unused_parameters=self.method.may_skip_params)

    # --- checkpoints --------------------------------------------------------------------------
    def _state(self, step: int) -> dict:
        return {"format": FORMAT, "step": step, "config_hash": self.cfg.hash(), "method": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_state()}

    def _restore(self, ckpt: dict) -> None:
        check_written_by(ckpt, self.ckpt_path, self.cfg)
        self.method.load_state_dict(ckpt["method"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        set_rng_state(ckpt["rng"])
        self.start_step = ckpt["step"]

    def _save(self, step: int) -> None:
        if self.dist.is_main:
            save_atomic(self._state(step), self.ckpt_path)
            self.record.saved(step, self.total)
        barrier()

    # --- the loop -----------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train to the end of the schedule and evaluate."""
        return self.train_until(self.total, evaluate_after=True)

    def train_until(self, stop: int, evaluate_after: bool = False) -> dict:
        """Train up to step ``stop`` of the full schedule (the learning rate and every ramp still follow
        ``self.total``), then evaluate if asked; ``reprokit replay`` stops early to check that the current code
        retraces a recorded run step for step."""
        dist, main = self.dist, self.dist.is_main
        if main:
            self.record.started(self.start_step, self.splits, {
                "total_steps": self.total, "world_size": dist.world_size, "device": str(dist.device)})
        try:
            if self.start_step < min(stop, self.total):
                self._train_steps(main, min(stop, self.total))
            return self.final_eval() if evaluate_after else {}
        except Exception as exc:  # the record says the run stopped, and why; the error itself goes on up
            if main:
                self.record.failed(exc)
            raise

    def _train_steps(self, main: bool, stop: int) -> None:
        cfg, dist = self.cfg, self.dist
        lab_ds = SegDataset(self.splits.labeled, cfg.data, train=True, strong=self.method.labeled_strong_view,
                            hidden_truth=self.method.reads_hidden_masks())
        it_l = _loader(lab_ds, cfg.data.batch_size, cfg.train.seed, 0, self.start_step, self.total, dist,
                       cfg.data.num_workers)
        it_u = None
        if self.method.uses_unlabeled:
            hidden = "hidden" if self.method.reads_hidden_masks() else "skip"
            unl_ds = SegDataset(self.splits.unlabeled, cfg.data, train=True, strong=True, masks=hidden)
            it_u = _loader(unl_ds, self.unlabeled_batch, cfg.train.seed, 1, self.start_step, self.total, dist,
                           cfg.data.num_workers)
        if main:
            self.record.open_log(self.start_step)
        bar = tqdm(total=self.total, initial=self.start_step, desc=f"{cfg.name} [{cfg.method_name}]",
                   disable=not (main and show_progress()), dynamic_ncols=True)
        bad = torch.zeros((), dtype=torch.bool, device=dist.device)
        t_last, step_last = time.perf_counter(), self.start_step
        self.step_module.train()
        try:
            for step in range(self.start_step, stop):
                labeled = _to_device(next(it_l), dist.device, cfg.train.channels_last)
                unlabeled = _to_device(next(it_u), dist.device, cfg.train.channels_last) if it_u else None
                with torch.autocast(dist.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    out = self.step_module(labeled, unlabeled, step)
                loss = sum(out.losses.values())
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                for teacher, student, momentum in self.method.ema_pairs():
                    ema_update(teacher, student, self.method.ema_momentum(momentum, step))
                bad |= ~torch.isfinite(loss.detach())
                done = step + 1
                log_now = done % cfg.train.log_every == 0 or done == self.total
                ckpt_now = done % cfg.train.ckpt_every == 0 or done == self.total
                if log_now or ckpt_now:
                    if bool(bad):  # one host sync, only at log / checkpoint steps
                        raise NonFiniteLossError(self._nan_message(step, out))
                if log_now:
                    now = time.perf_counter()
                    record = {"step": done, "loss": _scalar(loss), "lr": self.optimizer.param_groups[0]["lr"],
                              "sec_per_iter": (now - t_last) / max(done - step_last, 1)}
                    record.update({f"loss/{k}": _scalar(v) for k, v in out.losses.items()})
                    record.update({f"diag/{k}": _scalar(v) for k, v in out.diagnostics.items()})
                    t_last, step_last = now, done
                    if main:
                        self.record.log(record)
                        bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
                if ckpt_now:
                    self._save(done)
                if cfg.train.snapshot_every and done % cfg.train.snapshot_every == 0 and main:
                    save_atomic({"format": FORMAT, "step": done, "config_hash": cfg.hash(),
                                 "method": self.method.state_dict()}, self.run_dir / "snapshots" / f"step_{done}.pt")
                bar.update(1)
        finally:
            bar.close()
            if main:
                self.record.close_log()

    def _nan_message(self, step: int, out) -> str:
        losses = {k: _scalar(v) for k, v in out.losses.items()}
        last = load_checkpoint(self.ckpt_path)["step"] if self.ckpt_path.is_file() else None
        where = f"kept the last good checkpoint {self.ckpt_path} (step {last})" if last is not None else \
            "no checkpoint had been written yet"
        return (f"non-finite loss detected by step {step + 1} of run {self.run_dir} (losses at that step: {losses}); "
                f"training stopped and {where}. Lower optim.lr or check the data.")

    def final_eval(self) -> dict:
        """eval.json under the configured protocol, and each other protocol the method reports
        (:meth:`Method.other_protocols`) in its own file."""
        cfg = self.cfg
        val_ds = SegDataset(self.splits.val, cfg.data, train=False)
        net = self.method.eval_network()
        result = evaluate(net, val_ds, cfg.eval, cfg.eval_crop_size, cfg.data.num_classes,
                          self.dist, progress=show_progress(), keep=cfg.eval.keep_predictions,
                          amp_dtype=self.amp_dtype)
        summary = eval_summary(result, self.class_names, cfg.eval)
        checksum = [float(sum(p.detach().double().sum() for p in net.parameters()))]
        summary["rank_param_checksums"] = [c[0] for c in all_gather_floats(checksum, self.dist.device)]
        others = {}
        for other in self.method.other_protocols(cfg.eval):
            found = evaluate(net, val_ds, other, cfg.eval_crop_size, cfg.data.num_classes, self.dist,
                             amp_dtype=self.amp_dtype)
            others[protocol_file(other)] = eval_summary(found, self.class_names, other)
        if self.dist.is_main:
            predictions = {p["id"]: p["pred"] for p in result["predictions"]}
            self.record.finished(summary, others, predictions, self.total)
        barrier()
        return summary
