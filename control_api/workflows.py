"""/v1/workflows: create a workflow of named steps, read its graph, list a business key's."""

from __future__ import annotations

import uuid
from typing import Any

import anyio.to_thread
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody

from control_api.auth import requires
from control_api.quotas import QueueCap
from control_api.request_id import request_id_of
from control_api.schemas import WorkflowIn, WorkflowList
from core.access.keys import ApiKey
from core.engine.jobs import NewJob, publish_after_commit
from core.engine.workflow_spec import NewWorkflow
from core.engine.workflows import Workflow, create, get_workflow, list_workflows
from core.errors import InvalidInput
from core.platform.db import transaction
from core.platform.settings import Settings

log = structlog.get_logger(__name__)


def _create(settings: Settings, state: State, wf: NewWorkflow) -> tuple[Workflow, bool]:
    """Commit the workflow and its first jobs, publish those, and read the workflow back."""
    with transaction(settings) as conn:
        created = create(conn, wf)
    publish_after_commit(state.broker, created.publications)
    with transaction(settings) as conn:
        return get_workflow(conn, created.workflow_id, wf.tenant), created.created


class WorkflowsController(Controller):
    path = "/v1/workflows"
    tags = ["workflows"]

    @post(
        "/",
        guards=[requires("jobs:write")],
        summary="Create a workflow of named steps",
        responses={
            200: ResponseSpec(Workflow, description="The idempotency key was seen: the first workflow")
        },
    )
    async def create(
        self, request: Request[ApiKey, Any, Any], state: State, data: JSONBody[WorkflowIn]
    ) -> Response[Workflow]:
        key = request.user
        wf, errors = data.to_new_workflow(request_id_of(request.scope), tenant=key.tenant, created_by=key.id)
        if wf is None:
            raise InvalidInput(details=[e.as_dict() for e in errors])
        queue_cap: QueueCap = state.queue_cap
        # The first steps are jobs now, counted against the tenant's cap on queued jobs as any are.
        await queue_cap.check(
            [NewJob(type=s.type, payload=s.payload, tenant=key.tenant) for s in wf.steps if not s.after]
        )
        workflow, created = await anyio.to_thread.run_sync(_create, state.settings, state, wf)
        log.info("workflow_created", workflow_id=str(workflow.id), steps=len(workflow.steps), created=created)
        return Response(workflow, status_code=201 if created else 200)

    @get("/{workflow_id:uuid}", guards=[requires("jobs:read")], sync_to_thread=True, summary="Get a workflow")
    def read(
        self, request: Request[ApiKey, Any, Any], state: State, workflow_id: FromPath[uuid.UUID]
    ) -> Workflow:
        with transaction(state.settings) as conn:
            return get_workflow(conn, workflow_id, request.user.reach)

    @get("/", guards=[requires("jobs:read")], sync_to_thread=True, summary="List a business key's workflows")
    def list(
        self, request: Request[ApiKey, Any, Any], state: State, business_key: FromQuery[str]
    ) -> WorkflowList:
        with transaction(state.settings) as conn:
            return WorkflowList(list_workflows(conn, business_key, request.user.reach))
