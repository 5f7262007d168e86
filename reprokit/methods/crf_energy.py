"""The dense-CRF energy as a training loss (Tang et al., "On Regularized Losses for Weakly-supervised CNN
Segmentation", ECCV 2018), as CoSA's released code adds it to its total: the softmax output S is pulled
towards labellings that a fully connected bilateral CRF finds cheap, so predictions follow colour edges.

E(S) = -(1/N) sum_k sum_i g_i S_ki (W S)_ki, with W_ij = exp(-|p_i - p_j|^2 / 2 sigma_xy^2
- |I_i - I_j|^2 / 2 sigma_rgb^2) over every pair of pixels of an image (the pair of a pixel with itself
included), computed on the image and the probabilities downscaled by ``scale``. The gate g is 1 - max_k S_ki on
pixels the CAM pseudo-label decides, 1 on the pixels it leaves undecided, and 0 outside the image's valid crop,
so confident predictions are not pulled. As in the released code the gate is a constant of the step and the
gradient with respect to S is -2 g (W S) / N (the code's backward; the exact derivative of E would add
W (g S) / N instead of doubling).

The code filters with a permutohedral lattice, an approximation whose output is a fraction of the exact sum
(CoSA's ``crf_energy_weight`` takes that gain into the code's weight); here W S is computed exactly, in row
chunks, which digit-sized images make cheap and a GPU affords at VOC's crop. The code's numbers (energy weight,
sigma_xy 100 pixels) hold for its 448-pixel crop: on another image size the positions are measured in units of
that crop and the energy is divided by the square of the pixel count relative to it, so that a scene rescaled to
the code's crop gets the code's loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

# elements of one chunk of pairwise affinities [B, rows, P] (256 MiB in float32)
CHUNK_ELEMENTS = 1 << 26


def colours(image: torch.Tensor, mean, std) -> torch.Tensor:
    """The 0-255 colours of a batch [B, 3, H, W] normalised with ``mean`` and ``std`` (the data config's): the
    units in which the code's ``sigma_rgb`` is set."""
    image, shape = image.float(), (1, -1, 1, 1)
    return 255.0 * (image * image.new_tensor(list(std)).view(shape) + image.new_tensor(list(mean)).view(shape))


def bilateral_filter(image: torch.Tensor, maps: torch.Tensor, sigma_rgb: float, sigma_xy: float) -> torch.Tensor:
    """W maps, exactly: ``maps`` [B, K, H, W] filtered with the bilateral Gaussian affinity of ``image``
    [B, 3, H, W] (colour in the units of ``sigma_rgb``, positions in pixels over ``sigma_xy``)."""
    b, k, h, w = maps.shape
    rows, cols = torch.meshgrid(torch.arange(h, device=maps.device), torch.arange(w, device=maps.device),
                                indexing="ij")
    position = torch.stack([rows, cols], -1).reshape(1, h * w, 2).float().expand(b, -1, -1) / sigma_xy
    colour = image.float().flatten(2).transpose(1, 2) / sigma_rgb
    features = torch.cat([position, colour], 2)  # [B, P, 5]
    values = maps.float().flatten(2).transpose(1, 2)  # [B, P, K]
    step = max(1, CHUNK_ELEMENTS // (b * h * w))
    filtered = [torch.exp(-0.5 * torch.cdist(features[:, i:i + step], features).square()) @ values
                for i in range(0, h * w, step)]
    return torch.cat(filtered, 1).transpose(1, 2).reshape(b, k, h, w)


def dense_crf_energy_loss(probs: torch.Tensor, image: torch.Tensor, valid: torch.Tensor, undecided: torch.Tensor,
                          weight: float, sigma_rgb: float, sigma_xy: float, scale: float,
                          reference_crop: int) -> torch.Tensor:
    """E(S) of the module docstring for softmax probabilities ``probs`` [B, K, H, W] of the colour image
    ``image`` [B, 3, H, W] (0-255), the valid crop ``valid`` [B, H, W] and the CAM pseudo-label's undecided
    pixels ``undecided`` [B, H, W]; ``weight`` and ``sigma_xy`` (pixels) are the values for a
    ``reference_crop`` x ``reference_crop`` image, rescaled to this one's size. The value is E; the gradient
    is the released code's."""
    size = (int(probs.shape[-2] * scale), int(probs.shape[-1] * scale))  # one grid for all four, as the code's
    small = F.interpolate(probs.float(), size=size, mode="bilinear", align_corners=False)
    colour = F.interpolate(image.float(), size=size, mode="nearest")
    roi, open_ = (F.interpolate(m[:, None].float(), size=size, mode="nearest")[:, 0] for m in (valid, undecided))
    s = small * roi[:, None]
    relative = (probs.shape[-2] * probs.shape[-1]) / reference_crop ** 2  # pixels relative to the code's crop
    with torch.no_grad():  # constants of the step: no affinity chunk is kept for a backward pass
        gate = (roi - small.max(1).values).masked_fill(open_ > 0, 1.0).clamp(min=0)
        gated = bilateral_filter(colour, s, sigma_rgb, sigma_xy * scale * relative ** 0.5) * gate[:, None]
    n = len(probs)
    energy = -(s.detach() * gated).sum() / n
    surrogate = -2 * (s * gated).sum() / n  # the code's gradient
    return weight / relative ** 2 * (surrogate + (energy - surrogate).detach())
