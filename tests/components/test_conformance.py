"""Every registered component passes the shipped conformance checks (`ablate.testing`).

The cases are parametrized over `registry.names(group)` for every group; each check raises a
`ContractError` naming the component and the broken property.
"""

from __future__ import annotations

import pytest

from ablate import registry
from ablate.testing import checks_for, conformance_cases

CASES = conformance_cases()


def test_every_registered_component_of_every_group_is_checked():
    checked = {(c.subject.group, c.subject.name) for c in CASES}
    assert checked == {(g, n) for g in registry.GROUPS for n in registry.names(g)}
    assert all(checks_for(g) for g in registry.GROUPS)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_conformance(case):
    case.run()
