"""The torch feature extractors of the clustering study: a small conv autoencoder trained on the
images, and pooled CNN maps (timm, random init, or a SimSiam ``.pt`` encoder)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from glomkit import GlomkitError
from glomkit.nets.autoencoder import ConvAutoencoder


def _tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def autoencoder_features(images: np.ndarray, epochs: int = 10, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Train the AE (Adam 1e-3, MSE, batch 32) and return the codes and its loss history."""
    torch.manual_seed(seed)
    size = images.shape[1]
    if size % 8:
        raise GlomkitError(f"--size {size}: the autoencoder needs a multiple of 8")
    x = _tensor(images)
    ae = ConvAutoencoder(size)
    opt = torch.optim.Adam(ae.parameters(), 1e-3)
    gen = torch.Generator().manual_seed(seed)
    hist = []
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=gen)
        tot = 0.0
        for i in range(0, len(x), 32):
            b = x[perm[i : i + 32]]
            _, rec = ae(b)
            loss = nn.functional.mse_loss(rec, b)
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
        hist.append(round(tot / len(x), 5))
    ae.eval()
    with torch.no_grad():
        z = torch.cat([ae(x[i : i + 64])[0] for i in range(0, len(x), 64)])
    return z.numpy(), {"mse_history": hist}


@torch.no_grad()
def cnn_features(net: nn.Module, images: np.ndarray) -> np.ndarray:
    """Global-average-pooled ``forward_features`` maps (ImageNet normalisation)."""
    net.eval()
    from glomkit.models.metadata import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), 32):
        x = (_tensor(images[i : i + 32]) - mean) / std
        f = net.forward_features(x) if hasattr(net, "forward_features") else net(x)
        out.append(f.mean((2, 3)) if f.ndim == 4 else f.flatten(1))
    return torch.cat(out).numpy()
