"""Datasets the training and study commands read (never shipped: read from where they lie)."""
