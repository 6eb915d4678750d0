"""The torch networks of every model glomkit trains (detectors, segmenters, the classifier), on one shared encoder interface (``encoders.py``). Training code imports them; inference never does."""
