"""glomkit.cluster."""
