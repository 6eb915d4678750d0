"""What every stage shares and that imports nothing above it (stain operations, for now)."""
