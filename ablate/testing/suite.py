"""The checks each registry group must pass, in the order they run.

`ablate check` and the pytest plugin run these through `ablate.testing.conformance_cases`.
A group's checks are plain functions of a `Subject`; their names are the property they test.
"""

from __future__ import annotations

from ablate.testing.attention_checks import cache_variants, cached_decoding
from ablate.testing.compile_checks import compiled_matches_eager, precision_compiled
from ablate.testing.configs import config_round_trip
from ablate.testing.contract import Check
from ablate.testing.data_checks import (
    dataset_text,
    precision_step,
    tokenizer_ids,
    tokenizer_round_trip,
)
from ablate.testing.model_checks import (
    causality,
    hooks_run,
    norm_per_position,
    routing_outputs,
    seed_determinism,
    shapes_loss_grads,
)
from ablate.testing.post_checks import reward_values, stage_steps

MODEL_CHECKS = (
    shapes_loss_grads,
    seed_determinism,
    causality,
    config_round_trip,
    hooks_run,
    compiled_matches_eager,
)

CHECKS: dict[str, tuple[Check, ...]] = {
    "attention": (*MODEL_CHECKS, cached_decoding, cache_variants),
    "ffn": MODEL_CHECKS,
    "norm": (norm_per_position, *MODEL_CHECKS),
    "router": (routing_outputs, *MODEL_CHECKS),
    "mtp": MODEL_CHECKS,
    "precision": (config_round_trip, precision_step, precision_compiled),
    "dataset": (config_round_trip, dataset_text),
    "tokenizer": (config_round_trip, tokenizer_ids, tokenizer_round_trip),
    "posttrain": (config_round_trip, stage_steps),
    "reward": (config_round_trip, reward_values),
}
