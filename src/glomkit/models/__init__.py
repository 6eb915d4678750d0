"""Model files (ONNX + JSON metadata), the registry of bundled models, ONNX Runtime sessions."""
