"""glomkit.segment: glomerulus segmentation.

Torch-free (inference path): ``predict`` (segment_patches), ``morphometry`` (mask -> polygon,
area, diameter, perimeter), ``dataset`` (reading and fitting image/mask pairs), ``evaluate``.
Torch (training, ``glomkit[train]``): ``registry`` (create_segmenter), ``encoders``,
``deeplabv3``, ``unet``, ``segnet``, ``train``, ``study``.
"""
