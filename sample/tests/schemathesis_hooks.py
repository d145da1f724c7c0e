"""Schemathesis hooks for the sample's API run (loaded through ``SCHEMATHESIS_HOOKS``).

One rule of the API is documented in words only, since JSON Schema cannot relate a header to a
body field: a command that names its workflow in a field (``acceptInvitation``'s
``invitation_id``) takes a ``Workflow-Id`` header only when it names the same workflow. Generated
requests keep to it: a contradicting header is left out. The refusal of a contradicting one is
tested on its own (test_sample_http.py).
"""

from __future__ import annotations

from typing import Any

import schemathesis

from svrnty_sample.domain import (
    AcceptInvitationCommand,
    DeclineInvitationCommand,
    ExpireInvitationCommand,
)

WORKFLOW_ID_HEADER = "Workflow-Id"
#: the path of each continuing command, and the field that names its workflow
CONTINUING = {f"/api/command/{name}": cls.continues for name, cls in (
    ("acceptInvitation", AcceptInvitationCommand),
    ("declineInvitation", DeclineInvitationCommand),
    ("expireInvitation", ExpireInvitationCommand))}


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    field = CONTINUING.get(case.path)
    headers = case.headers
    if field and headers and WORKFLOW_ID_HEADER in headers:
        body = case.body if isinstance(case.body, dict) else {}
        if headers[WORKFLOW_ID_HEADER] != body.get(field):
            del headers[WORKFLOW_ID_HEADER]
    return case
