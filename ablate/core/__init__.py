"""The engine core: typed config, the model skeleton, data, and the training loop."""
