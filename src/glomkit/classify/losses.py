"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017) for unbalanced classes.

``FL(p_t) = -w_t (1 - p_t)^gamma log p_t``: with ``gamma = 0`` and no weights it is cross-entropy;
a larger ``gamma`` down-weights examples the model already gets right. The published glomerulus
classifier used ``gamma = 2.5``.

Example::

    loss_fn = FocalLoss(gamma=2.5, weight=class_weights(labels, 3))
    loss = loss_fn(logits, targets)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def class_weights(labels: Sequence[int], num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 over the classes present (absent classes: 0).

    With a set-valued target (index ``num_classes - 1`` reserved for it, see :class:`FocalLoss`),
    pass ``num_classes + 1``: the set is weighted like one more class.
    """
    counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=num_classes).float()
    w = torch.zeros(num_classes)
    present = counts > 0
    w[present] = 1.0 / counts[present]
    w[present] *= present.sum() / w[present].sum()
    return w


class FocalLoss(nn.Module):
    """Multi-class focal loss on logits, with optional per-class weights; mean over the batch.

    ``group``: class indices of a set-valued target. A target equal to the number of classes
    (one past the last) means "one of ``group``" (e.g. a glomerulus of unknown grade): its
    ``p_t`` is the summed probability of the group. ``weight`` then has one entry more, for it.
    """

    def __init__(
        self, gamma: float = 2.5, weight: torch.Tensor | None = None, group: Sequence[int] = ()
    ) -> None:
        super().__init__()
        self.gamma = float(gamma)
        self.register_buffer(
            "weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32)
        )
        self.group = [int(g) for g in group]

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1)
        k = logits.shape[1]
        if self.group:
            logp_group = torch.logsumexp(logp[:, self.group], dim=1, keepdim=True)
            logp = torch.cat([logp, logp_group], dim=1)
        elif bool((target >= k).any()):
            raise ValueError("FocalLoss: a set-valued target needs group=")
        logp_t = logp.gather(1, target[:, None]).squeeze(1)
        p_t = logp_t.exp()
        loss = -((1.0 - p_t) ** self.gamma) * logp_t
        if self.weight is not None:
            w = self.weight[target]
            return (loss * w).sum() / w.sum().clamp_min(1e-12)
        return loss.mean()
