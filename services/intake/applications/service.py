"""Rules of the citizen's side: submitting, reading, and following what departments do."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from services.intake.applications import repository
from services.intake.applications.prescreen import prescreen
from services.intake.applications.schemas import (
    ApplicantOut,
    ApplicationCreate,
    ApplicationCreated,
    ApplicationDetail,
    ApplicationPage,
    ApplicationSummary,
    AttachmentOut,
    TimelineEntryOut,
)
from services.intake.models import (
    Application,
    ApplicationStatus,
    Outcome,
)
from shared.auth import Principal, Role
from shared.catalog import catalog
from shared.db import session_on
from shared.errors import AppError, Conflict, Forbidden, InvalidInput, NotFound
from shared.events import EVENTS_STREAM, Envelope, EventType, route_stream
from shared.forms import validate_form
from shared.outbox import outbox_columns
from shared.pagination import decode_keyset, split_page
from shared.pii import PiiCipher, mask_id_number, mask_phone

STATUS_LABELS = {
    ApplicationStatus.SUBMITTED: "已提交，等待受理",
    ApplicationStatus.ACCEPTED: "已受理",
    ApplicationStatus.IN_REVIEW: "审核中",
    ApplicationStatus.NEEDS_INFO: "需要补充材料",
}
OUTCOME_LABELS = {
    Outcome.APPROVED: "已办结：审核通过",
    Outcome.REJECTED: "已办结：未通过",
    Outcome.WITHDRAWN: "已撤回",
}


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"
    message = "该 Idempotency-Key 已用于另一份不同的申请，请为新申请生成新的 Key"


class ApplicationFacts(Protocol):
    """What an application's submission messages tell of it: a stored `Application` has
    it, and so has a new submission's column values before they are written."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def item_code(self) -> str: ...
    @property
    def department(self) -> str: ...
    @property
    def region_code(self) -> str: ...
    @property
    def owner_openid(self) -> str | None: ...
    @property
    def submitted_by_role(self) -> str: ...
    @property
    def submitted_by_name(self) -> str | None: ...
    @property
    def applicant_name(self) -> str: ...
    @property
    def id_number_enc(self) -> str: ...
    @property
    def phone_enc(self) -> str: ...
    @property
    def id_number_masked(self) -> str: ...
    @property
    def phone_masked(self) -> str: ...
    @property
    def household(self) -> dict[str, Any]: ...
    @property
    def description(self) -> str: ...
    @property
    def form(self) -> dict[str, Any]: ...
    @property
    def prescreen(self) -> dict[str, Any] | None: ...
    @property
    def deadline(self) -> datetime: ...
    @property
    def route_event_id(self) -> uuid.UUID | None: ...
    @property
    def created_at(self) -> datetime: ...


def status_label(status: str, outcome: str | None) -> str:
    if status == ApplicationStatus.CLOSED and outcome is not None:
        return OUTCOME_LABELS[Outcome(outcome)]
    return STATUS_LABELS.get(ApplicationStatus(status), status)


def _request_hash(body: ApplicationCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit(
    connection: AsyncConnection,
    *,
    principal: Principal,
    body: ApplicationCreate,
    idempotency_key: str,
    cipher: PiiCipher,
    grid_worker_name: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Returns (HTTP status, body). The same key replays the first answer.

    The hot path of the platform, so it is written for few round trips: everything is
    checked and computed first; then the idempotency key goes in together with its answer,
    the application (the partial unique index refuses a second open one for the same person
    and item, and the key with it), the binding, the timeline line and both outbox
    messages — one statement, which needs no transaction around it: `connection` is an
    autocommit connection (`shared.db.autocommit_engine`)."""
    owner = principal.subject
    request_hash = _request_hash(body)
    item = catalog().item(body.item_code)
    if item is None:
        raise InvalidInput(
            "没有这个救助事项，请从事项目录中选择",
            code="item_unknown",
            details=[{"field": "item_code", "code": "item_unknown", "message": "没有这个救助事项"}],
        )
    form = validate_form(item, body.form)
    on_behalf = principal.role is Role.GRID_WORKER
    if on_behalf and body.household.region_code != principal.region:
        raise Forbidden("网格员只能为本县（市、区）的群众代报", code="region_out_of_scope")

    now = datetime.now(UTC)
    household = body.household
    id_number_hash = cipher.blind_index(body.applicant.id_number, purpose="id_number")
    phone_hash = cipher.blind_index(body.applicant.phone, purpose="phone")
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "item_code": item.code,
        "department": item.department,
        "status": ApplicationStatus.SUBMITTED.value,
        "owner_openid": None if on_behalf else owner,
        "submitted_by": principal.subject,
        "submitted_by_role": principal.role.value,
        "submitted_by_name": grid_worker_name if on_behalf else None,
        "applicant_name": body.applicant.name,
        "id_number_enc": cipher.encrypt(body.applicant.id_number, purpose="id_number"),
        "id_number_hash": id_number_hash,
        "phone_enc": cipher.encrypt(body.applicant.phone, purpose="phone"),
        "phone_hash": phone_hash,
        "id_number_masked": mask_id_number(body.applicant.id_number),
        "phone_masked": mask_phone(body.applicant.phone),
        "region_code": household.region_code,
        "household": household.model_dump(mode="json"),
        "annual_income_per_capita": household.annual_income_per_capita,
        "description": body.description,
        "form": form,
        "prescreen": prescreen(
            household.annual_income_per_capita, household.category.value, _local_date(now)
        ).model_dump(mode="json"),
        "deadline": now + timedelta(days=catalog().deadline_days(item)),
        "route_event_id": uuid.uuid4(),
        "reroutes": 0,
        "created_at": now,
        "updated_at": now,
    }
    # The source of the messages. Not a model instance: it would never be added to a
    # session, and building one (attribute instrumentation, instance state) cost ~1% of
    # the request.
    application = SimpleNamespace(**values)
    created = ApplicationCreated(
        id=values["id"],
        status=values["status"],
        item_code=values["item_code"],
        department=values["department"],
        deadline=values["deadline"],
        created_at=values["created_at"],
    ).model_dump(mode="json")

    department = department_name(item.department)
    submitted = await repository.insert_submission(
        connection,
        idempotency={
            "owner": owner,
            "key": idempotency_key,
            "request_hash": request_hash,
            "status_code": 201,
            "response_body": json.dumps(created),
        },
        application={
            **values,
            "household": json.dumps(values["household"]),
            "form": json.dumps(values["form"]),
            "prescreen": json.dumps(values["prescreen"]),
        },
        # The citizen applying for himself is that person: he keeps seeing what grid
        # workers later enter for the same name, ID number and phone.
        bind_citizen=not on_behalf,
        timeline={
            "kind": "submitted",
            "title": "网格员代为提交" if on_behalf else "申请已提交",
            "occurred_at": now,
            "detail": (
                f"网格员{grid_worker_name or ''}为您代报「{item.name}」，将转交{department}办理。"
                if on_behalf
                else f"您申请的「{item.name}」已提交，将转交{department}办理。"
            ),
        },
        outbox=outbox_columns(_submission_messages(application)),
    )
    if submitted is repository.Submitted.CREATED:
        return 201, created
    async with session_on(connection) as session:
        if submitted is repository.Submitted.KEY_USED:
            return await _replay(session, owner, idempotency_key, request_hash)
        existing = await repository.find_open_duplicate(session, id_number_hash, item.code)
    if existing is not None:
        raise _duplicate(existing)
    raise Conflict("该事项已有一份正在办理的申请", code="duplicate_application")


def _duplicate(existing: uuid.UUID) -> Conflict:
    return Conflict(
        "您已有一份同一事项的申请正在办理，请勿重复提交",
        code="duplicate_application",
        details={"application_id": str(existing)},
    )


async def _replay(
    session: AsyncSession, owner: str, key: str, request_hash: str
) -> tuple[int, dict[str, Any]]:
    record = await repository.get_idempotency_record(session, owner, key)
    if record is None or record.status_code is None or record.response_body is None:
        # Only possible if the first request's transaction is this one: treat as a conflict.
        raise Conflict("该申请正在处理中，请稍后查询", code="request_in_progress")
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused()
    return record.status_code, record.response_body


def department_name(code: str) -> str:
    department = catalog().department(code)
    return department.full_name if department else code


def _local_date(moment: datetime) -> date:
    """The province's calendar date (UTC+8) of a moment: which year's monitoring line applies."""
    return (moment + timedelta(hours=8)).date()


def route_envelope(application: ApplicationFacts) -> Envelope:
    """The message that takes the application to its department: what the department needs,
    personal data still encrypted. Always the same event id for the same application."""
    item = catalog().item(application.item_code)
    assert application.route_event_id is not None
    return Envelope(
        event_id=application.route_event_id,
        type=EventType.APPLICATION_SUBMITTED,
        application_id=application.id,
        department=application.department,
        occurred_at=application.created_at,
        payload={
            "item_code": application.item_code,
            "item_name": item.name if item else application.item_code,
            "region_code": application.region_code,
            "deadline": application.deadline.isoformat(),
            "submitted_at": application.created_at.isoformat(),
            "submitted_by_role": application.submitted_by_role,
            "submitted_by_name": application.submitted_by_name,
            "applicant": {
                "name": application.applicant_name,
                "id_number_enc": application.id_number_enc,
                "phone_enc": application.phone_enc,
                "id_number_masked": application.id_number_masked,
                "phone_masked": application.phone_masked,
            },
            "household": application.household,
            "description": application.description,
            "form": application.form,
            "prescreen": application.prescreen,
        },
    )


def _submission_messages(application: ApplicationFacts) -> list[tuple[str, Envelope]]:
    """Two messages, one transaction with the application: the route message to the
    department, and an event for everyone else that carries no personal data."""
    return [
        (route_stream(application.department), route_envelope(application)),
        (
            EVENTS_STREAM,
            Envelope(
                type=EventType.APPLICATION_SUBMITTED,
                application_id=application.id,
                department=application.department,
                occurred_at=application.created_at,
                payload={
                    "item_code": application.item_code,
                    "region_code": application.region_code,
                    "deadline": application.deadline.isoformat(),
                    "submitted_at": application.created_at.isoformat(),
                    # Whom notify tells: the WeChat user who applied (none for a grid
                    # worker's entry) and the phone, still sealed.
                    "recipient": {
                        "openid": application.owner_openid,
                        "phone_enc": application.phone_enc,
                    },
                },
            ),
        ),
    ]


def _summary(application: Application) -> ApplicationSummary:
    item = catalog().item(application.item_code)
    return ApplicationSummary(
        id=application.id,
        item_code=application.item_code,
        item_name=item.name if item else application.item_code,
        department=application.department,
        status=application.status,
        status_label=status_label(application.status, application.outcome),
        outcome=application.outcome,
        submitted_by_role=application.submitted_by_role,
        deadline=application.deadline,
        created_at=application.created_at,
        updated_at=application.updated_at,
    )


async def list_mine(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> ApplicationPage:
    rows = await repository.list_visible(
        session, principal, limit=limit + 1, after=decode_keyset(cursor)
    )
    page, next_cursor = split_page(rows, limit, lambda a: (a.created_at, a.id))
    return ApplicationPage(items=[_summary(a) for a in page], next_cursor=next_cursor)


async def get_visible(
    session: AsyncSession,
    principal: Principal,
    application_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Application:
    application = await repository.get_visible(
        session, application_id, principal, for_update=for_update
    )
    if application is None:
        # Someone else's application is "not found", never "forbidden": no existence leak.
        raise NotFound("找不到这份申请")
    return application


async def get_mine(
    session: AsyncSession, principal: Principal, application_id: uuid.UUID
) -> ApplicationDetail:
    application = await get_visible(session, principal, application_id)
    entries = await repository.timeline(session, application.id)
    attachments = await repository.attachments_of(session, application.id)
    return ApplicationDetail(
        **_summary(application).model_dump(),
        applicant=ApplicantOut(
            name=application.applicant_name,
            id_number=application.id_number_masked,
            phone=application.phone_masked,
        ),
        household=application.household,
        description=application.description,
        form=application.form,
        info_request=application.info_request
        if application.status == ApplicationStatus.NEEDS_INFO
        else None,
        decision=application.decision,
        rating=application.rating,
        attachments=[
            AttachmentOut(
                id=a.id,
                content_type=a.content_type,
                size=a.size,
                filename=a.filename,
                created_at=a.created_at,
            )
            for a in attachments
        ],
        timeline=[
            TimelineEntryOut(kind=e.kind, title=e.title, detail=e.detail, occurred_at=e.occurred_at)
            for e in entries
        ],
    )
