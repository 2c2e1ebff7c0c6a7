"""A typed Python client of the studio's render API (httpx; blocking and asyncio).

It imports nothing of the studio's own packages: it ships apart from them and speaks only HTTP and
WebSocket to the API, with its own models of the API's shapes.
"""

from studio_client.accounts import (
    Account,
    AdminKey,
    AuditEvent,
    AuditPage,
    Invited,
    PasswordLink,
    SignInSession,
    User,
)
from studio_client.aio import AsyncStudioClient
from studio_client.client import StudioClient
from studio_client.errors import EventStreamLost, StudioError
from studio_client.models import (
    FINAL_STATUSES,
    Designer,
    ErrorDetail,
    Image,
    Job,
    JobError,
    JobEvent,
    JobPage,
    JobRequest,
    LivePreview,
    Notice,
    PassImage,
    Progress,
    Project,
    ShareLink,
    Style,
    StyleAvailability,
    TemplateRef,
    Upload,
)
from studio_client.policy import RetryPolicy
from studio_client.templates import (
    Constraints,
    Draft,
    Problem,
    Publication,
    Template,
    TemplateInput,
    TemplateSummary,
    TemplateVersion,
    TemplateVersionInfo,
    ValidationReport,
)

__all__ = [
    "FINAL_STATUSES",
    "Account",
    "AdminKey",
    "AsyncStudioClient",
    "AuditEvent",
    "AuditPage",
    "Constraints",
    "Designer",
    "Draft",
    "ErrorDetail",
    "EventStreamLost",
    "Image",
    "Invited",
    "Job",
    "JobError",
    "JobEvent",
    "JobPage",
    "JobRequest",
    "LivePreview",
    "Notice",
    "PassImage",
    "PasswordLink",
    "Problem",
    "Progress",
    "Project",
    "Publication",
    "RetryPolicy",
    "ShareLink",
    "SignInSession",
    "StudioClient",
    "StudioError",
    "Style",
    "StyleAvailability",
    "Template",
    "TemplateInput",
    "TemplateRef",
    "TemplateSummary",
    "TemplateVersion",
    "TemplateVersionInfo",
    "Upload",
    "User",
    "ValidationReport",
]
