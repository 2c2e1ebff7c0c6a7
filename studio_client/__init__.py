"""A typed Python client of the studio's render API (httpx; blocking and asyncio).

It imports nothing of the studio's own packages: it ships apart from them and speaks only HTTP and
WebSocket to the API, with its own models of the API's shapes.
"""

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
    Notice,
    Progress,
    Style,
    StyleAvailability,
    Upload,
)
from studio_client.policy import RetryPolicy

__all__ = [
    "FINAL_STATUSES",
    "AsyncStudioClient",
    "Designer",
    "ErrorDetail",
    "EventStreamLost",
    "Image",
    "Job",
    "JobError",
    "JobEvent",
    "JobPage",
    "JobRequest",
    "Notice",
    "Progress",
    "RetryPolicy",
    "StudioClient",
    "StudioError",
    "Style",
    "StyleAvailability",
    "Upload",
]
