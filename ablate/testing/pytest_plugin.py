"""pytest plugin (entry point `pytest11: ablate`): run the conformance checks in a test suite.

A test taking the `ablate_case` argument runs once per selected (component, check) case:

    def test_contract(ablate_case):
        ablate_case.run()

    pytest --ablate-check attention/my_attn --ablate-plugins my_pkg.my_attn

Without `--ablate-check` every registered component is selected. A check that cannot run
here (no local data) is reported as skipped.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ablate", "ablate component conformance checks")
    group.addoption(
        "--ablate-check",
        action="append",
        default=[],
        metavar="GROUP[/NAME]",
        help="components the `ablate_case` tests check (repeatable; default: all)",
    )
    group.addoption(
        "--ablate-plugins",
        action="append",
        default=[],
        metavar="MODULE",
        help="modules to import first, registering third-party components (repeatable)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ablate_case" not in metafunc.fixturenames:
        return
    from ablate.testing import conformance_cases

    opt = metafunc.config.getoption
    cases = conformance_cases(opt("ablate_check"), opt("ablate_plugins"))
    metafunc.parametrize("ablate_case", cases, ids=str)
