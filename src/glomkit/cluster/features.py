"""Feature extractors for the clustering study (GlomeruLearn design).

``pixels`` (raw pixels, PCA in the reduction step), ``morphometry`` (three colour-free measures of
the tuft, no model: ``morphometry_features``), ``autoencoder`` (small conv AE trained here
on the images), ``vgg19`` and ``resnet50`` (timm, random init: no pretrained weights offline, a
random-feature baseline), ``simsiam`` (a SimSiam encoder: an exported ``.onnx`` file runs on ONNX
Runtime without torch; a ``.pt`` training file runs in torch).

Each can see the crops stain-normalised first (``stain_view``): ``reinhard`` or ``macenko``
(``glomkit.core.stain``, each crop to a fixed PAS target) or ``gray`` (luminance only: what is
left when colour, the stain's main signature, is removed); ``auto`` gives each feature its own
(``view_of``: ``FEATURE_VIEW``, else none).
"""

from __future__ import annotations

import time

import numpy as np

from glomkit import GlomkitError
from glomkit.core.stain import LUMA, STAIN_NORMS, optical_density, stain_normaliser

FEATURES = ("pixels", "morphometry", "autoencoder", "vgg19", "resnet50", "simsiam")
MORPHOMETRY = ("tuft_heterogeneity", "open_space", "nuclear_contrast")
DISC_FRACTION = 0.38  # radius of the measured central disc, as a share of the crop side
GLASS_OD = 0.25  # summed optical density below which a pixel is glass (lumen, Bowman's space)
STAIN_VIEWS = ("auto", *STAIN_NORMS)
# what ``auto`` means per feature (every other feature: ``none``), and the side in px a feature is
# measured at whatever ``--size`` (session 19, docs/studies/clustering/s19: on the design slides and
# on the held-out ones the label-free choice across views was Macenko, and the measures lose most of
# their separation below 96 px)
FEATURE_VIEW = {"morphometry": "macenko"}
FEATURE_SIZE = {"morphometry": 128}


def view_of(feature: str, stain: str) -> str:
    """The stain view a feature sees: ``stain``, or under ``auto`` the feature's own (default none)."""
    return FEATURE_VIEW.get(feature, "none") if stain == "auto" else stain


WEIGHTS_NOTE = {
    "pixels": "raw RGB pixels (no model)",
    "morphometry": "tuft heterogeneity, open space, nuclear contrast (no model, no colour)",
    "autoencoder": "conv autoencoder trained here on these images",
    "vgg19": "timm vgg19, RANDOM init (no pretrained weights offline)",
    "resnet50": "timm resnet50, RANDOM init (no pretrained weights offline)",
    "simsiam": "SimSiam encoder trained here (--encoder)",
}


def stain_view(images: np.ndarray, name: str) -> np.ndarray:
    """The crops as a feature extractor sees them: unchanged, stain-normalised, or grey (3 equal channels)."""
    if name in ("none", "auto"):  # auto is resolved per feature by view_of
        return images
    if name in STAIN_NORMS:
        return np.asarray(stain_normaliser(name)(images), np.uint8)
    raise GlomkitError(f"--stain {name!r}: expected one of {', '.join(STAIN_VIEWS)}")


def padding_mask(image: np.ndarray, white: int = 254, band: int = 1) -> np.ndarray:
    """Bool H x W: the white strips the pipeline pads an edge-cut glomerulus with (rows or columns
    from a border inward that are white in every pixel, plus ``band`` px of the blend beside them).
    Tissue and glass never fill a whole row of a glomerulus crop."""
    full = image.min(axis=-1) >= white
    mask = np.zeros(full.shape, bool)
    for lines, view in ((full, mask), (full.T, mask.T)):  # rows, then columns
        whole = lines.all(axis=1)
        n = len(whole)
        top = int(np.argmin(whole)) if not whole.all() else n
        bottom = int(np.argmin(whole[::-1])) if not whole.all() else n
        if top:
            view[: min(n, top + band)] = True
        if bottom:
            view[max(0, n - bottom - band) :] = True
    return mask


def morphometry_features(images: np.ndarray) -> np.ndarray:
    """N x 3 colour-free measures of each crop's central disc (radius ``DISC_FRACTION`` of the
    side: inside the glomerulus of a tight or a pipeline-centred crop; the white strips an edge-cut
    glomerulus is padded with are left out, ``padding_mask``), each as a log:

    - ``tuft_heterogeneity``: coefficient of variation of the summed optical density (a sclerosed
      tuft is solid and even; a patent one alternates cells, matrix and open capillaries);
    - ``open_space``: share of glass pixels (summed OD < ``GLASS_OD``: capillary lumens, Bowman's space);
    - ``nuclear_contrast``: mean black top-hat of the luminance over its median (small dark blobs,
      mostly nuclei), structuring-element radius ``side / 64`` px.

    Hue never enters (summed OD and luminance), and the first and last are ratios, so a darker or
    paler stain of the same tissue moves them little. Crops are ``uint8`` N x S x S x 3.
    """
    import cv2

    n, side = len(images), images.shape[1]
    yy, xx = np.mgrid[:side, : images.shape[2]]
    c = (side - 1) / 2
    disc = (xx - c) ** 2 + (yy - c) ** 2 <= (DISC_FRACTION * side) ** 2
    r = max(1, round(side / 64))
    se = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    out = np.empty((n, len(MORPHOMETRY)), np.float32)
    for i, im in enumerate(images):
        f = im.astype(np.float32)
        pad = padding_mask(im)
        inner = disc & ~pad
        keep = inner if inner.any() else disc
        od = optical_density(im).sum(axis=-1)[keep]
        lum = f @ LUMA / 255
        lum = lum / max(float(np.median(lum[keep])), 1e-3)
        lum[pad] = 1.0  # padding is neither a nucleus nor the edge of one
        dark = cv2.morphologyEx(lum, cv2.MORPH_BLACKHAT, se)[keep]
        out[i] = (
            od.std() / max(float(od.mean()), 1e-3),
            (od < GLASS_OD).mean(),
            dark.mean(),
        )
    return np.log(out + 1e-3)


def solid_cluster(feats: np.ndarray, assignment: np.ndarray) -> int:
    """The cluster of ``assignment`` whose crops have the lowest mean ``tuft_heterogeneity`` (column
    0 of ``morphometry_features``): the most solid, even tufts, where global sclerosis lies. A
    reading of a label-free partition, not a label: "this group against the rest"."""
    ids = np.unique(assignment)
    return int(ids[np.argmin([feats[assignment == c, 0].mean() for c in ids])])


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
    elif name == "morphometry":
        feats = morphometry_features(images)
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
