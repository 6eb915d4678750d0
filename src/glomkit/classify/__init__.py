"""glomkit.classify."""
