"""The conformance runner: cases, results and the errors a check raises.

A case is one check on one registered component (`attention/mla::cached_decoding`). Checks are
plain functions of a `Subject` that raise `ContractError` naming the component and the broken
property, or `CheckSkipped` when the environment cannot run them (no local data).
This module imports no torch: the pytest plugin loads it in every session.
"""

from __future__ import annotations

import importlib
import unittest
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

from ablate import registry


class ContractError(AssertionError):
    """A component broke its group's contract; the message names both."""


class CheckSkipped(unittest.SkipTest):
    """A check could not run here (e.g. a dataset with no local copy); the reason says why.

    A `unittest.SkipTest`, so pytest reports a test that raises it as skipped.
    """


@dataclass(frozen=True)
class Subject:
    """The component under test: `group/name` and its registered class."""

    group: str
    name: str

    @property
    def label(self) -> str:
        return f"{self.group}/{self.name}"

    @property
    def cls(self) -> type:
        return registry.get(self.group, self.name)

    def default_config(self) -> Any:
        return self.cls.Config()

    def fail(self, what: str) -> NoReturn:
        raise ContractError(f"{self.label}: {what}")

    def expect(self, ok: bool, what: str) -> None:
        """Fail with `what` (the broken property) unless `ok`."""
        if not ok:
            self.fail(what)


Check = Callable[[Subject], None]


@dataclass(frozen=True)
class Case:
    """One check on one component."""

    subject: Subject
    check: Check

    @property
    def id(self) -> str:
        return f"{self.subject.label}::{self.check.__name__}"

    def run(self) -> None:
        """Run the check; raises `ContractError` or `CheckSkipped`."""
        self.check(self.subject)

    def __str__(self) -> str:
        return self.id


@dataclass(frozen=True)
class Result:
    case: Case
    status: str  # "ok", "FAIL" or "skip"
    message: str = ""

    def line(self) -> str:
        """One printable line: `ok    attention/mha::shapes` or `FAIL  ...: why`."""
        return f"{self.status:<5} {self.case.id}" + (f": {self.message}" if self.message else "")


def run_case(case: Case) -> Result:
    """Run one case, turning any exception into a FAIL result (a crash is a broken contract)."""
    try:
        case.run()
    except CheckSkipped as e:
        return Result(case, "skip", str(e))
    except ContractError as e:
        return Result(case, "FAIL", str(e))
    except Exception as e:
        return Result(case, "FAIL", f"{case.subject.label}: raised {type(e).__name__}: {e}")
    return Result(case, "ok")


def checks_for(group: str) -> tuple[Check, ...]:
    """The shipped checks of one registry group, in the order they run."""
    suite = importlib.import_module("ablate.testing.suite")
    return suite.CHECKS[group]


def _subjects(spec: str) -> list[Subject]:
    group, _, pattern = spec.partition("/")
    if group not in registry.GROUPS:
        raise ValueError(
            f"unknown component group {group!r} in {spec!r}; groups are "
            f"{', '.join(registry.GROUPS)}"
        )
    names = registry.names(group, pattern or "*")
    if pattern and not any(ch in pattern for ch in "*?[") and not names:
        registry.get(group, pattern)  # raises ValueError with close matches
    return [Subject(group, n) for n in names]


def conformance_cases(specs: Iterable[str] = (), plugins: Iterable[str] = ()) -> list[Case]:
    """Every (component, check) case selected by `specs`, after importing `plugins`.

    Args:
        specs: `group`, `group/name` or `group/glob`; empty selects every registered component.
        plugins: modules to import first (they register third-party components).
    """
    registry.load_plugins(plugins)
    specs = list(specs) or list(registry.GROUPS)
    subjects = list(dict.fromkeys(s for spec in specs for s in _subjects(spec)))
    return [Case(s, check) for s in subjects for check in checks_for(s.group)]
