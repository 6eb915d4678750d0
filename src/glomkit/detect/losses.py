"""CircleNet losses: CenterNet's penalty-reduced focal loss and masked L1 at centres."""

from __future__ import annotations

import torch


def focal_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 2.0,
    beta: float = 4.0,
    ignore: torch.Tensor | None = None,
) -> torch.Tensor:
    """Penalty-reduced pixel-wise focal loss (Zhou et al. 2019) on sigmoid outputs, per object.

    ``ignore`` (like ``target``, 0/1): cells with no background loss (a centre there still counts)."""
    pred = pred.clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1.0 - pos
    if ignore is not None:
        neg = neg * (1.0 - ignore)
    pos_loss = torch.log(pred) * (1 - pred) ** alpha * pos
    neg_loss = torch.log(1 - pred) * pred**alpha * (1 - target) ** beta * neg
    n_pos = pos.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / n_pos.clamp(min=1.0)


def gather_at(feature: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Values of ``feature`` (N,C,H,W) at flat cell ``index`` (N,K): (N,K,C)."""
    n, c = feature.shape[:2]
    flat = feature.view(n, c, -1).permute(0, 2, 1)
    return flat.gather(1, index.unsqueeze(-1).expand(-1, -1, c))


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean L1 over real entries: pred/target (N,K,C), mask (N,K)."""
    m = mask.unsqueeze(-1).expand_as(pred)
    return (torch.abs(pred - target) * m).sum() / (m.sum() + 1e-4)


def circlenet_loss(outputs, batch: dict[str, torch.Tensor], stride: int = 4, radius_weight: float = 0.1):
    """Total loss and its parts. Radius L1 is measured in heatmap cells (input px / stride)."""
    heatmap, radius, offset = outputs
    hm = focal_loss(heatmap, batch["heatmap"], ignore=batch.get("ignore"))
    r = masked_l1(
        gather_at(radius, batch["index"]) / stride, batch["radius"].unsqueeze(-1) / stride, batch["mask"]
    )
    off = masked_l1(gather_at(offset, batch["index"]), batch["offset"], batch["mask"])
    total = hm + radius_weight * r + off
    return total, {"heatmap": float(hm.detach()), "radius": float(r.detach()), "offset": float(off.detach())}
