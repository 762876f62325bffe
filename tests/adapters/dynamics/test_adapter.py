"""The Dynamics 365 adapter against the Dataverse sandbox: the shared contract."""

from __future__ import annotations

import pytest

from sandboxes.dynamics.sandbox import DynamicsSandbox
from tests.adapters.contract import ContractSubject, CrmAdapterContract
from tests.adapters.dynamics.fixtures import (  # noqa: F401
    DynamicsControls,
    dynamics_controls,
    dynamics_sandbox,
    sandbox_adapter,
    top_up,
)

PAGE = 50
SUBJECT = "account"


@pytest.fixture(scope="module")
def contract_subject(
    dynamics_sandbox: DynamicsSandbox,  # noqa: F811
    dynamics_controls: DynamicsControls,  # noqa: F811
) -> ContractSubject:
    top_up(dynamics_sandbox, SUBJECT, 3 * PAGE)
    return ContractSubject(
        make_adapter=lambda: sandbox_adapter(dynamics_sandbox, page_size=PAGE),
        controls=dynamics_controls,
        object_name=SUBJECT,
        new_values=lambda tag: {"name": f"Contract {tag}"},
        changed_values=lambda tag: {"name": f"Renamed {tag}"},
        page_size=PAGE,
    )


class TestDynamicsContract(CrmAdapterContract):
    """The shared adapter contract on the Dataverse sandbox."""
