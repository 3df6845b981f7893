"""Post-training inside a trial: stages (SFT, GRPO, rejection sampling, distillation) that run
after pre-training on a verifiable task, with rule-based rewards (`ablate.posttrain.bases`)."""
