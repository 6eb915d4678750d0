"""Training infrastructure shared by every trainer (torch; the ``train`` extra).

:mod:`glomkit.train.loop` is the one training loop of the detector, segmenter, classifier and
SimSiam trainers.
"""
