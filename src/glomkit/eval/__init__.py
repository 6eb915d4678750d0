"""glomkit.eval."""
