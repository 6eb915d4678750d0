"""Detector training (torch): CircleNet and segmentation detectors, composed fields, annotated data.

Decoding and slide-wide inference live in ``glomkit.infer`` (``infer.kinds``, ``infer.detect``).
"""
