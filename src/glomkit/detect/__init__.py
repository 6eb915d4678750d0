"""Circle detection: CircleNet model and decoding, circle geometry, training data."""
