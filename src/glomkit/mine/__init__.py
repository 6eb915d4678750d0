"""glomkit.mine."""
