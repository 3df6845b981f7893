"""Conformance checks every registered component must pass, importable by plugins' own tests.

    from ablate.testing import conformance_cases

    @pytest.mark.parametrize("case", conformance_cases(["attention/my_attn"]), ids=str)
    def test_contract(case):
        case.run()  # raises ContractError naming the component and the broken property

The same cases run from `ablate check attention/my_attn --plugins my_pkg.my_attn` and from
pytest's `--ablate-check attention/my_attn` (see `ablate.testing.pytest_plugin`). The checks
of each group are listed in `ablate.testing.suite.CHECKS`.
"""

from ablate.testing.configs import tiny_model_config
from ablate.testing.contract import (
    Case,
    CheckSkipped,
    ContractError,
    Result,
    Subject,
    checks_for,
    conformance_cases,
    run_case,
)

__all__ = [
    "Case",
    "CheckSkipped",
    "ContractError",
    "Result",
    "Subject",
    "checks_for",
    "conformance_cases",
    "run_case",
    "tiny_model_config",
]
