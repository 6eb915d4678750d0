"""Feature extractors for the clustering study (GlomeruLearn design).

``pixels`` (raw pixels, PCA in the reduction step), ``autoencoder`` (small conv AE trained here
on the images), ``vgg19`` and ``resnet50`` (timm, random init: no pretrained weights offline, a
random-feature baseline), ``simsiam`` (a SimSiam encoder: an exported ``.onnx`` file runs on ONNX
Runtime without torch; a ``.pt`` training file runs in torch).

Each can see the crops stain-normalised first (``stain_view``): ``reinhard`` or ``macenko``
(``glomkit.core.stain``, each crop to a fixed PAS target) or ``gray`` (luminance only: what is
left when colour, the stain's main signature, is removed).
"""

from __future__ import annotations

import time

import numpy as np

from glomkit import GlomkitError

FEATURES = ("pixels", "autoencoder", "vgg19", "resnet50", "simsiam")
STAIN_VIEWS = ("none", "reinhard", "macenko", "gray")
WEIGHTS_NOTE = {
    "pixels": "raw RGB pixels (no model)",
    "autoencoder": "conv autoencoder trained here on these images",
    "vgg19": "timm vgg19, RANDOM init (no pretrained weights offline)",
    "resnet50": "timm resnet50, RANDOM init (no pretrained weights offline)",
    "simsiam": "SimSiam encoder trained here (--encoder)",
}


def stain_view(images: np.ndarray, name: str) -> np.ndarray:
    """The crops as a feature extractor sees them: unchanged, stain-normalised, or grey (3 equal channels)."""
    if name == "none":
        return images
    if name == "gray":
        lum = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        return np.repeat(np.clip(lum.round(), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    if name in ("reinhard", "macenko"):
        from glomkit.core.stain import stain_normaliser

        return np.asarray(stain_normaliser(name)(images), np.uint8)
    raise GlomkitError(f"--stain {name!r}: expected one of {', '.join(STAIN_VIEWS)}")


def extract(
    name: str,
    images: np.ndarray,
    encoder: str | None = None,
    seed: int = 0,
    ae_epochs: int = 10,
    threads: int = 1,
) -> tuple[np.ndarray, dict]:
    """(N x D features, info) for one extractor name."""
    t0 = time.monotonic()
    info: dict = {"weights": WEIGHTS_NOTE.get(name, name)}
    if name == "pixels":
        feats = images.reshape(len(images), -1).astype(np.float32) / 255
    elif name == "simsiam" and encoder and str(encoder).lower().endswith(".onnx"):
        from glomkit.cluster.encoder import OnnxEncoder

        enc = OnnxEncoder(encoder, threads)
        feats = enc.features(images)
        info["weights"] = enc.describe()
    elif name == "autoencoder":
        from glomkit.cluster.cnn import autoencoder_features

        feats, extra = autoencoder_features(images, ae_epochs, seed)
        info.update(extra)
    elif name in ("vgg19", "resnet50"):
        import timm
        import torch

        from glomkit.cluster.cnn import cnn_features

        torch.manual_seed(seed)
        feats = cnn_features(timm.create_model(name, pretrained=False, num_classes=0), images)
    elif name == "simsiam":
        if not encoder:
            raise GlomkitError("--features simsiam needs --encoder ENCODER")
        from glomkit.cluster.cnn import cnn_features
        from glomkit.models.metadata import parse_pretraining
        from glomkit.ssl.simsiam import load_encoder

        net, meta = load_encoder(encoder)
        feats = cnn_features(net, images)
        info["weights"] = f"SimSiam {parse_pretraining(meta, encoder).describe()} from {encoder}"
    else:
        raise GlomkitError(f"--features: unknown extractor {name!r} (choose from {', '.join(FEATURES)})")
    info["seconds"] = round(time.monotonic() - t0, 1)
    return np.asarray(feats, np.float32), info
