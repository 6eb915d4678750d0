"""glomkit._cli."""
