"""The addition task: exact answers, traces that reason correctly, disjoint splits, determinism."""

from __future__ import annotations

from ablate import registry
from ablate.posttrain.format import parse


def _task(**fields):
    return registry.build(registry.get("dataset", "addition").Config(**fields))


def test_problems_answers_and_traces():
    task = _task(num_digits=3)
    p = task.problem(678, 456)
    assert (p.prompt, p.answer) == ("678+456=", "1134")
    assert p.trace == "<think>8+6+0=14 7+5+1=13 6+4+1=11</think><answer>1134</answer>"
    for p in task.problems("train", 200, 3):
        a, b = (int(x) for x in p.prompt[:-1].split("+"))
        assert p.answer == str(a + b) and len(p.prompt) == 8
        assert parse(p.trace).answer == p.answer
        assert set(parse(p.trace).think) <= set(task.reasoning_vocabulary())


def test_splits_are_disjoint_and_the_corpus_holds_no_test_prompt():
    task = _task(num_digits=2, num_train=500)
    test = {p.prompt for p in task.problems("test", 200, 0)}
    train = {p.prompt for p in task.problems("train", 2000, 1)}
    assert test and not test & train
    text = task.load_text()
    assert not any(prompt in text for prompt in test)


def test_corpus_is_deterministic_and_mixes_formats():
    cfg = dict(num_digits=2, num_train=400, trace_fraction=0.5, mixed_fraction=0.5)
    text = _task(**cfg).load_text()
    assert text == _task(**cfg).load_text()
    assert text != _task(**cfg, seed=1).load_text()
    lines = text.splitlines()
    assert len(lines) == 400
    traced = [x for x in lines if "<think>" in x]
    mixed = [x for x in traced if any(c in "abcdefghij" for c in parse(x[6:]).think)]
    assert 150 < len(traced) < 250 and 50 < len(mixed) < 150
