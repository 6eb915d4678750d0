"""Inference with ONNX Runtime (numpy + OpenCV, no torch): the tile loop, detector kinds, patches,
classification, segmentation and morphometry. See docs/ARCHITECTURE.md."""
