"""glomkit.ssl."""
