"""glomkit.synth: procedural PAS-like kidney slides and glomerulus patches with ground truth.

- :func:`glomkit.synth.glomerulus.render_glomerulus`: one object of a five-class label + mask.
- :func:`glomkit.synth.tissue.render_tissue`: cortex texture (tubules, interstitium, vessels).
- :func:`glomkit.synth.slide.synthesize_slide` / :func:`~glomkit.synth.slide.write_truth`:
  a pyramidal TIFF that OpenSlide opens, with its truth as a SlideRecord and CSV/XML/GeoJSON.
- :func:`glomkit.synth.patches.make_patch_dataset`: a labelled patch folder for classifiers.
"""
