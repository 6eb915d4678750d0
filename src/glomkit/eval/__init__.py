"""Metrics: circle and box AP (COCOeval), classification and segmentation figures."""
