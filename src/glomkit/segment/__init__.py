"""glomkit.segment."""
