"""Evidence attached to an application: photos or PDFs, type checked by content, stored by
content hash, visible to the applicant here and to the case's clerks in verification."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.intake.applications import repository
from services.intake.applications.actions import announce
from services.intake.applications.schemas import AttachmentOut
from services.intake.applications.service import get_visible
from services.intake.models import ApplicationStatus, Attachment
from shared.auth import Principal
from shared.errors import AppError, Conflict, NotFound
from shared.events import EventType
from shared.objectstore import DirectoryObjectStore, sniff_content_type

ALLOWED_TYPES = {"image/jpeg", "image/png", "image/webp", "application/pdf"}


class AttachmentTooLarge(AppError):
    status_code = 413
    code = "attachment_too_large"


class AttachmentTypeRefused(AppError):
    status_code = 415
    code = "attachment_type_invalid"
    message = "只能上传照片（JPG、PNG、WEBP）或 PDF 文件"


def safe_filename(name: str | None) -> str:
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    cleaned = "".join(ch for ch in base if ch.isprintable() and ch not in '"<>|:*?')
    return cleaned[:200] or "附件"


async def add(
    session: AsyncSession,
    store: DirectoryObjectStore,
    principal: Principal,
    application_id: uuid.UUID,
    *,
    data: bytes,
    filename: str | None,
    max_bytes: int,
    max_count: int,
) -> AttachmentOut:
    application = await get_visible(session, principal, application_id, for_update=True)
    if application.status == ApplicationStatus.CLOSED:
        raise Conflict("申请已办结，不能再上传附件", code="application_closed")
    if len(data) > max_bytes:
        raise AttachmentTooLarge(f"文件不能超过 {max_bytes // (1024 * 1024)} MB")
    if not data:
        raise AttachmentTypeRefused("文件是空的")
    content_type = sniff_content_type(data)
    if content_type not in ALLOWED_TYPES:
        raise AttachmentTypeRefused()
    if await repository.count_attachments(session, application.id) >= max_count:
        raise Conflict(f"每份申请最多上传 {max_count} 个附件", code="too_many_attachments")
    sha256 = await store.put(data)
    now = datetime.now(UTC)
    attachment = Attachment(
        id=uuid.uuid4(),
        application_id=application.id,
        sha256=sha256,
        content_type=content_type,
        size=len(data),
        filename=safe_filename(filename),
        uploaded_by=principal.subject,
        created_at=now,
    )
    repository.add_attachment(session, attachment)
    announce(
        session,
        application,
        EventType.APPLICATION_ATTACHMENT_ADDED,
        route={
            "attachment_id": str(attachment.id),
            "sha256": sha256,
            "content_type": content_type,
            "size": attachment.size,
            "filename": attachment.filename,
        },
        at=now,
    )
    return AttachmentOut(
        id=attachment.id,
        content_type=content_type,
        size=attachment.size,
        filename=attachment.filename,
        created_at=now,
    )


async def read(
    session: AsyncSession,
    store: DirectoryObjectStore,
    principal: Principal,
    application_id: uuid.UUID,
    attachment_id: uuid.UUID,
) -> tuple[Attachment, bytes]:
    application = await get_visible(session, principal, application_id)
    for attachment in await repository.attachments_of(session, application.id):
        if attachment.id == attachment_id:
            return attachment, await store.get(attachment.sha256)
    raise NotFound("找不到该附件")
