"""Hugging Face interop: DeepSeek-V2/V3 checkpoints (config.json + safetensors) in and out.

`hf_config` maps config fields, `hf_weights` state-dict names (and FP8 block dequantization),
`io` reads and writes safetensors shards, `convert` ties them to trial directories.
"""
