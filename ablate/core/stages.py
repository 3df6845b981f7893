"""Trial references: a trial that starts from, or reads, another trial's final weights.

A reference is the string `trial:<id>`, a 12-hex trial id after `REF_PREFIX`. A sweep writes
one where an arm says `from: ARM` (as `train.init_from`) or `${trial:ARM}` in any config value
(a distillation teacher, say): the same-seed trial of ARM (`ablate.study.stage_spec`). The id
is known before that trial runs, so the reference is part of the referring trial's id while
the referenced files are not. At run time it resolves to the sibling directory
`<trials dir>/<id>/` of the referring trial, which the ledger hands out only once the
referenced trial is done (`ablate.study.order`). "Final weights" are the post-trained model
when the trial ran post-training stages (`post_checkpoint.pt`), else its training checkpoint.

Use from a component that reads another trial (POSTTRAIN's teacher, for instance), given the
current trial's directory (`Trial.out`) and the config value:

    from ablate.core import stages

    teacher_dir = stages.resolve_dir(cfg.teacher, trial_dir, key="distill.teacher")
    weights = stages.final_weights(teacher_dir)          # a CPU state dict
    info = stages.load_weights(model, cfg.teacher, trial_dir, key="distill.teacher")

`resolve_dir` passes a plain path through unchanged, so one field takes either form.
`load_weights` returns the record (trial id, directory, sha256 of the files read) that the
trainer keeps as `init_from.json` and in `summary.json` for `train.init_from`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

REF_PREFIX = "trial:"
RECORD = "init_from.json"  # where a trial records the checkpoint it started from
_REF_RE = re.compile(r"^trial:([0-9a-f]{12})$")


def is_ref(value: Any) -> bool:
    """Whether `value` is a trial reference (`trial:...`; `ref_id` validates the id)."""
    return isinstance(value, str) and value.startswith(REF_PREFIX)


def make_ref(trial_id: str) -> str:
    """`trial:<trial_id>`."""
    return REF_PREFIX + trial_id


def ref_id(ref: str, key: str = "train.init_from") -> str:
    """The trial id of a reference.

    Raises:
        ValueError: not `trial:` followed by a 12-hex trial id (names `key`).
    """
    m = _REF_RE.match(ref)
    if m is None:
        raise ValueError(f"{key}={ref}: a trial reference is 'trial:' and a 12-hex trial id")
    return m.group(1)


def resolve_dir(value: str, trial_dir: str | Path, key: str = "train.init_from") -> Path:
    """The directory `value` names: a reference's finished sibling trial, else the path itself.

    Raises:
        ValueError: the referenced trial is missing or has not finished as `done`.
    """
    if not is_ref(value):
        return Path(value).expanduser()
    trial_id = ref_id(value, key)
    root = Path(trial_dir).parent / trial_id
    summary = root / "summary.json"
    if not summary.is_file():
        raise ValueError(
            f"{key}={value}: trial {trial_id} has not finished ({summary} is missing); a "
            "sweep runs it first, `ablate train` needs it beside this trial's directory"
        )
    status = json.loads(summary.read_text()).get("status")
    if status != "done":
        raise ValueError(f"{key}={value}: trial {trial_id} ended {status!r}, not 'done'")
    return root


def _weight_files(root: Path) -> list[Path]:
    """The files `final_weights(root)` reads, in the order it tries them."""
    from ablate.core.checkpoint import CHECKPOINT, WEIGHTS
    from ablate.posttrain.stage import POST_CHECKPOINT, final_weights

    if final_weights(root) is not None:
        return [root / POST_CHECKPOINT]
    return [root / n for n in (WEIGHTS, CHECKPOINT) if (root / n).is_file()]


def final_weights(root: str | Path) -> dict[str, torch.Tensor]:
    """A trial's final model state dict on the CPU: post-trained when it has one.

    Raises:
        ValueError: no weights in `root`.
    """
    from ablate.interop.convert import trial_weights
    from ablate.posttrain.stage import final_weights as post_weights

    root = Path(root)
    weights = post_weights(root)
    return weights if weights is not None else trial_weights(root)


def weights_sha256(root: str | Path) -> str:
    """sha256 over the names and contents of the files `final_weights(root)` reads."""
    digest = hashlib.sha256()
    for file in _weight_files(Path(root)):
        inner = hashlib.sha256()
        with open(file, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 24), b""):
                inner.update(chunk)
        digest.update(f"{file.name}:{inner.hexdigest()}".encode())
    return digest.hexdigest()


def load_weights(
    model: nn.Module, value: str, trial_dir: str | Path, key: str = "train.init_from"
) -> dict[str, Any]:
    """Load the final weights `value` names (a reference or a trial directory) into `model`.

    Returns the record of what was loaded: `trial_id` (of a reference, else ""), `path`,
    `sha256` (`weights_sha256`) and `weights` (`post` or `train`).

    Raises:
        ValueError: an unfinished or missing trial, or weights that do not fit `model`.
    """
    from ablate.posttrain.stage import POST_CHECKPOINT

    root = resolve_dir(value, trial_dir, key)
    files = _weight_files(root)
    state = final_weights(root)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1] if "\n" in str(e) else str(e)
        raise ValueError(f"{key}={value}: weights do not fit the model: {first}") from None
    return {
        "trial_id": ref_id(value, key) if is_ref(value) else "",
        "path": str(root.resolve()),
        "sha256": weights_sha256(root),
        "weights": "post" if files and files[0].name == POST_CHECKPOINT else "train",
    }


def init_record(trial_dir: str | Path) -> dict[str, Any]:
    """`{"init_from": record}` when the trial started from another trial's weights, else {}."""
    path = Path(trial_dir) / RECORD
    return {"init_from": json.loads(path.read_text())} if path.is_file() else {}
