"""glomkit.synth."""
