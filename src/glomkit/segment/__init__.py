"""glomkit.segment: training and studies of glomerulus segmenters (torch, ``glomkit[train]``).

``registry`` (create_segmenter), ``encoders``, ``deeplabv3``, ``unet``, ``segnet``, ``train``,
``study``; ``dataset`` reads image/mask pairs, ``evaluate`` scores an ONNX segmenter on them.
Inference (segment_patches, morphometry) lives in ``glomkit.infer``.
"""
