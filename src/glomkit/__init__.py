"""glomkit: glomerulus detection, classification and segmentation for kidney whole-slide images."""

__version__ = "0.1.0"


class GlomkitError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
