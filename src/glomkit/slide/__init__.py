"""Slide access: OpenSlide and plain images, tissue mask, tile grid, threaded tile reader."""
