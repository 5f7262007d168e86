"""Evaluation: whole image, centre crop or sliding window (window = crop, stride 2/3 of it), optional
multi-scale and flip; the confusion matrix is accumulated on the device and summed over DDP ranks."""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from reprokit import metrics
from reprokit.config import EvalConfig
from reprokit.engine.distributed import DistInfo, all_reduce_sum
from reprokit.labels import classes_present


def sliding_window_probs(net: nn.Module, image: torch.Tensor, crop: int, stride: int, num_classes: int
                          ) -> torch.Tensor:
    """Class probabilities [B, C, H, W]: the softmax of overlapping ``crop`` windows, averaged where they
    overlap (images smaller than ``crop`` are padded)."""
    b, _, h, w = image.shape
    ph, pw = max(crop - h, 0), max(crop - w, 0)
    padded = F.pad(image, (0, pw, 0, ph))
    H, W = padded.shape[-2:]
    probs = padded.new_zeros(b, num_classes, H, W)
    counts = padded.new_zeros(1, 1, H, W)
    rows = range(0, max(H - crop, 0) + stride, stride)
    cols = range(0, max(W - crop, 0) + stride, stride)
    for y in rows:
        for x in cols:
            y0, x0 = min(y, H - crop), min(x, W - crop)
            window = padded[..., y0:y0 + crop, x0:x0 + crop]
            probs[..., y0:y0 + crop, x0:x0 + crop] += net(window).float().softmax(1)
            counts[..., y0:y0 + crop, x0:x0 + crop] += 1
    return (probs / counts)[..., :h, :w]


def predict_probs(net: nn.Module, image: torch.Tensor, cfg: EvalConfig, crop: int, num_classes: int) -> torch.Tensor:
    """Class probabilities [B, C, H, W] under the configured mode, scales and flip."""
    h, w = image.shape[-2:]
    total = 0
    for scale in cfg.scales:
        img = image if scale == 1 else F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False)
        for flip in ([False, True] if cfg.flip else [False]):
            x = img.flip(-1) if flip else img
            if cfg.mode == "sliding":
                p = sliding_window_probs(net, x, crop, max(1, math.ceil(crop * cfg.stride_ratio)), num_classes)
            else:
                p = net(x).float().softmax(1)
            p = p.flip(-1) if flip else p
            total = total + F.interpolate(p, size=(h, w), mode="bilinear", align_corners=False)
    return total / (len(cfg.scales) * (2 if cfg.flip else 1))


def center_crop(t: torch.Tensor, crop: int) -> torch.Tensor:
    h, w = t.shape[-2:]
    y, x = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
    return t[..., y:y + crop, x:x + crop]


@torch.no_grad()
def evaluate(net: nn.Module, dataset, cfg: EvalConfig, crop: int, num_classes: int, dist: DistInfo,
             progress: bool = False, keep: int = 0, amp_dtype: Optional[torch.dtype] = None) -> dict:
    """Return {'confusion', 'iou', 'miou', 'predictions'}; this rank evaluates indices rank::world."""
    from reprokit.data.datasets import collate

    was_training = net.training
    net.eval()
    indices = list(range(dist.rank, len(dataset), dist.world_size))
    subset = torch.utils.data.Subset(dataset, indices)
    loader = torch.utils.data.DataLoader(subset, batch_size=cfg.batch_size, collate_fn=collate)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long, device=dist.device)
    kept: list[dict] = []
    for batch in tqdm(loader, desc="eval", disable=not (progress and dist.is_main), leave=False):
        image, mask = batch["image"].to(dist.device), batch["mask"].to(dist.device)
        allowed = true_classes(mask, num_classes) if cfg.mask_absent_classes else None  # the whole image's
        if cfg.mode == "center":
            image, mask = center_crop(image, crop), center_crop(mask, crop)
        with torch.autocast(dist.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            probs = predict_probs(net, image, cfg, crop, num_classes)
        if allowed is not None:
            probs = probs.masked_fill(~allowed[:, :, None, None], -1.0)
        pred = probs.argmax(1)
        confusion += metrics.confusion_matrix(pred, mask, num_classes)
        for i in range(len(batch["id"])):
            if len(kept) < keep:
                kept.append({"id": batch["id"][i], "pred": pred[i].to(torch.uint8).cpu()})
    all_reduce_sum(confusion)
    net.train(was_training)
    iou = metrics.iou(confusion.cpu())
    return {"confusion": confusion.cpu(), "iou": iou, "miou": metrics.mean_iou(confusion.cpu()), "predictions": kept}


def protocol_file(cfg: EvalConfig) -> str:
    """Where an evaluation other than the run's own is written: ``eval-<mode>[-flip][-masked].json``."""
    return f"eval-{cfg.mode}{'-flip' if cfg.flip else ''}{'-masked' if cfg.mask_absent_classes else ''}.json"


def true_classes(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Bool [B, C]: the classes in each image's mask, background (0) always included (the masked protocol)."""
    present = classes_present(mask, num_classes)
    present[:, 0] = True
    return present


def eval_summary(result: dict, class_names: Sequence[str], cfg: EvalConfig) -> dict:
    """JSON-ready evaluation record (eval.json)."""
    iou = result["iou"].tolist()
    return {
        "miou": result["miou"],
        "iou": {name: (None if math.isnan(v) else v) for name, v in zip(class_names, iou)},
        "class_names": list(class_names),
        "pixel_accuracy": metrics.pixel_accuracy(result["confusion"]),
        "confusion": result["confusion"].tolist(),
        "eval": {"mode": cfg.mode, "scales": cfg.scales, "flip": cfg.flip, "stride_ratio": cfg.stride_ratio,
                 "mask_absent_classes": cfg.mask_absent_classes},
    }
