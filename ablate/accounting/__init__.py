"""Accounting of a config without training it: parameters (total and activated per token), KV
cache, FLOPs, memory and the GPU-hours and cost of a token budget (`ablate inspect`)."""
