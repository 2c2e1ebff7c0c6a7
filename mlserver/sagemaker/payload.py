"""The invocation contract (README.md): the request payload the backend writes to S3, parsed and checked,
and the success body the adapter answers. Pydantic at this edge only; inside, plain dicts and bytes."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlserver.sagemaker.errors import InvalidPayload

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Used in ComfyUI URLs (/history/{id}) and file names: a UUID fits, so do other plain ids.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
# Relative folders of plain names only: no "..", no leading "/", nothing ComfyUI's upload guard would refuse.
SUBFOLDER_PATTERN = r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$"
FILENAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.png$"


class InputImage(BaseModel):
    """An image a LoadImage node of the graph reads as `<subfolder>/<filename>`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    subfolder: str = Field(pattern=SUBFOLDER_PATTERN)
    filename: str = Field(pattern=FILENAME_PATTERN)
    png_base64: str = Field(min_length=1)

    @field_validator("png_base64")
    @classmethod
    def _is_a_png(cls, value: str) -> str:
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"not base64: {exc}") from None
        if not data.startswith(PNG_SIGNATURE):
            raise ValueError("not a PNG (no PNG signature)")
        return value

    @property
    def path(self) -> str:
        return f"{self.subfolder}/{self.filename}"

    def png(self) -> bytes:
        return base64.b64decode(self.png_base64)


Sketch = InputImage  # the name of a request's one image before templates


class InvocationRequest(BaseModel):
    """`POST /invocations` body: one job's graph, its extra_data and the images it loads (`sketch`: the
    one image of a request from a backend older than templates, still read during a rolling deploy)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(pattern=JOB_ID_PATTERN)
    graph: dict[str, Any] = Field(min_length=1)
    extra_data: dict[str, Any] = Field(default_factory=dict)
    images: list[InputImage] = Field(default_factory=list, max_length=16)
    sketch: InputImage | None = None

    @property
    def input_images(self) -> list[InputImage]:
        """Every image to upload before submitting, the legacy `sketch` included."""
        return [*self.images, *([self.sketch] if self.sketch is not None else [])]

    @field_validator("graph")
    @classmethod
    def _is_api_format(cls, graph: dict[str, Any]) -> dict[str, Any]:
        for node_id, node in graph.items():
            if not isinstance(node, dict):
                raise ValueError(f"node {node_id!r} is not an object")
            if not isinstance(node.get("class_type"), str) or not node["class_type"]:
                raise ValueError(f"node {node_id!r} has no class_type")
            if not isinstance(node.get("inputs", {}), dict):
                raise ValueError(f"node {node_id!r}: inputs is not an object")
        return graph


def parse_request(body: bytes) -> InvocationRequest:
    """The payload, or InvalidPayload listing every problem as {field, message}."""
    try:
        return InvocationRequest.model_validate_json(body)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
            for err in exc.errors(include_url=False)
        ]
        raise InvalidPayload("the request body is not a valid invocation payload", details=details) from None


def encode_png(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
