"""ablate: an experiment harness for ablation studies of LLM architecture components.

Importing this package is cheap: no torch-heavy, W&B, Optuna or matplotlib imports happen here.
"""

__version__ = "0.1.0"
