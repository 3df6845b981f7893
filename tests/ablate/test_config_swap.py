"""Swapping a component in a later layer starts its slot from the new component's defaults."""

from __future__ import annotations

import pytest
import yaml

from ablate import cli, registry
from ablate.core.config import ConfigError, load_config, to_dict
from ablate.study.sweep import load_sweep
from tests.conftest import REPO

SMALL = REPO / "sweeps" / "base" / "small.yaml"  # width 128: every component validates on it


def at(key: str, **fields) -> dict:
    """Dotted overrides of the slot at `key`: `at("model.mtp", depth=2)`."""
    return {f"{key}.{k}": v for k, v in fields.items()}


MLA = at("model.attention", name="mla", kv_lora_rank=32)
MOE = at("model.ffn", name="moe", num_routed_experts=4)
ATT, FFN, ROUTER, PREC = "model.attention", "model.ffn", "model.ffn.router", "train.precision"
MTP, DATA, TOK = "model.mtp", "data.dataset", "data.tokenizer"

# (slot key, earlier layer, later layer, fields the switch drops): both directions per group
CASES = [
    (ATT, {**MLA, **at(ATT, qk_rope_head_dim=8)}, at(ATT, name="mha"),
     ("kv_lora_rank", "qk_rope_head_dim")),
    (ATT, at(ATT, name="gqa", num_kv_heads=1), {**MLA, **at(ATT, v_head_dim=16)},
     ("num_kv_heads",)),
    (FFN, {**MOE, **at(ROUTER, name="softmax_aux", alpha=0.01)},
     at(FFN, name="dense", hidden_dim=96), ("num_routed_experts", "router")),
    (FFN, at(FFN, name="dense", hidden_dim=96), {**MOE, **at(ROUTER, update_rate=0.01)},
     ("hidden_dim",)),
    (ROUTER, {**MOE, **at(ROUTER, name="softmax_aux", alpha=0.01)},
     at(ROUTER, name="sigmoid_bias", update_rate=0.01), ("alpha",)),
    (ROUTER, {**MOE, **at(ROUTER, update_rate=0.01)},  # moe's default router: sigmoid_bias
     at(ROUTER, name="softmax_aux", scope="micro_batch"), ("update_rate",)),
    (PREC, at(PREC, name="fp8_block", backend="emulation"), at(PREC, name="bf16"), ("backend",)),
    (PREC, at(PREC, name="bf16", moment_dtype="bfloat16"),
     at(PREC, name="fp8_block", stats_every=10), ("moment_dtype",)),
    (MTP, at(MTP, name="mtp", depth=2), at(MTP, name="none"), ("depth",)),
    (MTP, at(MTP, name="none"), at(MTP, name="mtp", depth=2), ()),
    (DATA, at(DATA, name="embedded", max_chars=20000), at(DATA, name="text", path="corpus.txt"),
     ("max_chars",)),
    (DATA, at(DATA, name="text", path="corpus.txt"), at(DATA, name="embedded", max_chars=50000),
     ("path",)),
    (TOK, at(TOK, name="byte"), at(TOK, name="char"), ()),
    (TOK, at(TOK, name="char"), at(TOK, name="byte"), ()),
]  # fmt: skip
IDS = [f"{key}:{old.get(key + '.name', 'sigmoid_bias')}-{new[key + '.name']}"
       for key, old, new, _ in CASES]  # fmt: skip


def nest(dotted: dict) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def sweep_file(tmp_path, overrides, arm, baseline="b", other=None):
    arms = {"a": {**(other or {}), "train.lr": 0.002}, "b": arm}  # `a` differs from `b`
    spec = {"name": "swap", "base": str(SMALL), "seeds": [0], "budget": {"steps": 5},
            "baseline": baseline, "overrides": overrides, "arms": arms}  # fmt: skip
    return write_yaml(tmp_path / "swap.yaml", spec)


def resolve(layer, tmp_path, old, new):
    """The config after `old` then `new` at one layering step, and the source naming `new`."""
    if layer == "base->config":
        write_yaml(tmp_path / "base.yaml", {"base": str(SMALL), **nest(old)})
        child = write_yaml(tmp_path / "child.yaml", {"base": "base.yaml", **nest(new)})
        return load_config(child), str(child)
    if layer == "overrides->arm":
        s = load_sweep(sweep_file(tmp_path, old, new))
        return s.trials[1].cfg, "arm b"
    cli = [f"{k}={v}" for k, v in new.items()]  # applies to both arms
    s = load_sweep(sweep_file(tmp_path, {}, old, other=old), cli)
    return s.trials[1].cfg, "command line"


def get(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


LAYERS = ["base->config", "overrides->arm", "arm->command line"]


@pytest.mark.parametrize("layer", LAYERS)
@pytest.mark.parametrize("key,old,new,dropped", CASES, ids=IDS)
def test_switch_starts_from_new_defaults_and_notes_what_was_dropped(
    tmp_path, layer, key, old, new, dropped
):
    cfg, source = resolve(layer, tmp_path, old, new)
    group = registry.name_of(get(cfg, key))[0]
    given = {k[len(key) + 1 :]: v for k, v in new.items() if k.startswith(key + ".")}
    expected = to_dict(registry.get(group, given.pop("name")).Config())
    for field, value in given.items():  # the later layer's own fields over the defaults
        *parents, leaf = field.split(".")
        node = expected
        for part in parents:
            node = node[part]
        node[leaf] = value
    assert to_dict(get(cfg, key)) == expected
    old_name = old.get(f"{key}.name", "sigmoid_bias")  # moe's default router
    notes = [n for n in cfg.notes if n.startswith(f"{source}: {key}: ")]
    if dropped:
        line = f"{source}: {key}: dropped {', '.join(dropped)} from {old_name} (switched to "
        assert notes == [line + f"{new[key + '.name']})"]
    else:
        assert notes == []


@pytest.mark.parametrize("layer", LAYERS)
def test_issue_example_both_directions(tmp_path, layer):
    mla = {**MLA, **at(ATT, qk_rope_head_dim=8)}
    to_mha, _ = resolve(layer, tmp_path, mla, {"model.attention.name": "mha"})
    assert to_dict(to_mha.model.attention) == {"name": "mha", "head_dim": 0}
    to_mla, _ = resolve(layer, tmp_path, {"model.attention.name": "mha"}, mla)
    assert (to_mla.model.attention.kv_lora_rank, to_mla.model.attention.qk_rope_head_dim) == (32, 8)
    assert to_mla.notes == ()  # mha carried no fields, so nothing was dropped


def test_dry_run_prints_the_dropped_fields(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mla = {**MLA, **at(ATT, qk_rope_head_dim=8)}
    path = sweep_file(tmp_path, mla, {"model.attention.name": "mha"}, baseline="a")
    assert cli.main(["run", str(path), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert (
        "note: arm b: model.attention: dropped kv_lora_rank, qk_rope_head_dim from mla "
        "(switched to mha)" in err
    )


def test_same_component_merges_and_keeps_fields(tmp_path):
    same = {"model.attention.name": "mla", "model.attention.q_lora_rank": 16}
    s = load_sweep(sweep_file(tmp_path, MLA, same))
    cfg = s.trials[1].cfg
    assert (cfg.model.attention.kv_lora_rank, cfg.model.attention.q_lora_rank) == (32, 16)
    assert s.notes == []


@pytest.mark.parametrize(
    "layer,bad,key",
    [
        ("base->config", "kv_lora_rnk", "model.attention.kv_lora_rnk"),
        ("overrides->arm", "kv_lora_rnk", "arms.b.model.attention.kv_lora_rnk"),
        ("arm->command line", "kv_lora_rnk", "model.attention.kv_lora_rnk"),
    ],
)
def test_unknown_field_in_the_switching_layer_is_an_error(tmp_path, layer, bad, key):
    new = {"model.attention.name": "mla", f"model.attention.{bad}": 32}
    with pytest.raises(ConfigError) as e:
        resolve(layer, tmp_path, {"model.attention.name": "gqa"}, new)
    assert e.value.key == key and "did you mean: kv_lora_rank" in str(e.value)


def test_field_of_the_old_component_given_with_the_switch_is_an_error(tmp_path):
    arm = {"model.attention.name": "mha", "model.attention.kv_lora_rank": 32}
    with pytest.raises(ConfigError, match="unknown key for attention/mha") as e:
        load_sweep(sweep_file(tmp_path, MLA, arm))
    assert e.value.key == "arms.b.model.attention.kv_lora_rank"


def test_a_later_layer_cannot_give_fields_the_new_component_lacks(tmp_path):
    s = sweep_file(tmp_path, MLA, {"model.attention.name": "mha"})
    with pytest.raises(ConfigError, match="unknown key for attention/mha"):
        load_sweep(s, ["model.attention.kv_lora_rank=16"])


def test_slot_shorthand_switches_too(tmp_path):
    write_yaml(tmp_path / "base.yaml", {"base": str(SMALL), **nest(MLA)})
    child = write_yaml(tmp_path / "c.yaml", {"base": "base.yaml", "model": {"attention": "mha"}})
    assert to_dict(load_config(child).model.attention) == {"name": "mha", "head_dim": 0}
    same = write_yaml(tmp_path / "s.yaml", {"base": "base.yaml", "model": {"attention": "mla"}})
    assert load_config(same).model.attention.kv_lora_rank == 32
