"""The HTML ablation report and the statistics behind it."""
