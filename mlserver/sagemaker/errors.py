"""The adapter's error tree and the one JSON shape every non-2xx answer has.

    AdapterError                    status, code and message of a failed invocation
    ├── InvalidPayload          400 invalid_payload       the request body breaks the contract
    ├── GraphRejected           422 comfy_rejected        ComfyUI's validation refused the graph (node_errors)
    ├── ExecutionFailed         500 comfy_execution_error a node raised while ComfyUI ran the graph
    │   └── OutOfMemory         500 comfy_out_of_memory   ... and it was the GPU running out of memory
    ├── Interrupted             500 comfy_interrupted     someone else interrupted the prompt
    ├── NoImages                500 comfy_no_images       the prompt succeeded without a SaveImage image
    ├── ComfyUnavailable        503 comfy_unavailable     the local ComfyUI did not answer (or lost the job)
    ├── Draining                503 draining              the container is shutting down (SIGTERM)
    └── InvocationTimeout       504 timeout               INVOCATION_TIMEOUT_S passed; prompt interrupted

Never a 200 with an error inside: SageMaker async files a 2xx under the output location as a success.
"""

from __future__ import annotations

from typing import Any, ClassVar

from fastapi.responses import JSONResponse


class AdapterError(Exception):
    """The invocation failed."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str | None = None, **fields: Any) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.fields = fields
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.fields}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


class InvalidPayload(AdapterError):
    """The request body is not a valid invocation payload."""

    status, code = 400, "invalid_payload"


class GraphRejected(AdapterError):
    """ComfyUI rejected the graph at validation."""

    status, code = 422, "comfy_rejected"


class ExecutionFailed(AdapterError):
    """A node failed while ComfyUI ran the graph."""

    status, code = 500, "comfy_execution_error"


class OutOfMemory(ExecutionFailed):
    """ComfyUI ran out of GPU memory."""

    code = "comfy_out_of_memory"


class Interrupted(AdapterError):
    """The prompt was interrupted in ComfyUI by someone other than this adapter."""

    status, code = 500, "comfy_interrupted"


class NoImages(AdapterError):
    """ComfyUI finished the prompt but no SaveImage node produced an image."""

    status, code = 500, "comfy_no_images"


class ComfyUnavailable(AdapterError):
    """The local ComfyUI is not reachable."""

    status, code = 503, "comfy_unavailable"


class Draining(AdapterError):
    """The container is shutting down and takes no more work."""

    status, code = 503, "draining"


class InvocationTimeout(AdapterError):
    """The invocation ran past INVOCATION_TIMEOUT_S; its prompt was interrupted."""

    status, code = 504, "timeout"
