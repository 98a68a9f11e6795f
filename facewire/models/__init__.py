"""Models: the registry of detectors and embedders, and the code that runs them."""
