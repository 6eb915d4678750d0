"""The small convolutional autoencoder of the clustering study (GlomeruLearn's recipe): its code is the feature."""

from __future__ import annotations

import torch
from torch import nn


class ConvAutoencoder(nn.Module):
    """64x64 -> 128-d code -> 64x64; the code is the feature."""

    def __init__(self, size: int = 64, code: int = 128):
        super().__init__()
        s = size // 8
        self.s = s
        self.enc = nn.Sequential(
            nn.Conv2d(3, 16, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * s * s, code),
        )
        self.dec_fc = nn.Linear(code, 64 * s * s)
        self.dec = nn.Sequential(
            nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 3, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.enc(x)
        return z, self.dec(self.dec_fc(z).view(-1, 64, self.s, self.s))
