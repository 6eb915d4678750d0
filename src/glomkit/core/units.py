"""Physical scale limits shared by the readers, the writers and the CLI (no imports)."""

# Plausible level-0 µm/px of a microscopy image: 0.05 (beyond a 100x oil objective) to 10 (a 1x
# overview). Outside it the scale is a typo (25 for 0.25) or broken metadata.
MPP_RANGE = (0.05, 10.0)
