"""The template API's shapes as the client sees them (GET/POST /api/templates...), and the requests'.

A template is a ComfyUI graph (API format) with declared inputs; a designer runs its current version
with values for those inputs. An input's `constraints` are the *effective* ones (the node's spec
narrowed by the declaration), so a form can show the limits before a value breaks them.
Unknown fields are kept (`extra="allow"`) on reports and problems: they are shown to leads as sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

InputKind = Literal[
    "short_text", "long_text", "integer", "number", "choice", "seed", "image", "style", "model"
]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class Constraints(_Shape):
    min: int | float | None = None  # an int stays an int: a seed's 2**64 - 1 is not a float
    max: int | float | None = None
    step: int | float | None = None
    choices: list[Any] | None = None
    max_length: int | None = None
    multiline: bool | None = None
    min_width: int | None = None
    min_height: int | None = None


class TemplateInput(_Shape):
    """One declared input of a template's current version."""

    key: str
    label: str
    help: str = ""
    kind: InputKind
    default: Any = None
    required: bool = True
    constraints: Constraints = Field(default_factory=Constraints)
    folder: str | None = None


class Problem(_Open):
    """One validation failure: what is wrong and where (node id, class, input, ComfyUI instance)."""

    code: str = ""
    message: str = ""
    field: str | None = None
    node_id: str | None = None
    class_type: str | None = None
    input: str | None = None
    instance: str | None = None


class ValidationReport(_Open):
    """What validation found against the instances now; `ok` when nothing stops publishing. Also
    (kept as sent): `instances` (which will run it and why the others will not), `needs`, `lane`,
    `dry_run`."""

    ok: bool = False
    problems: list[Problem] = Field(default_factory=list)
    warnings: list[Problem] = Field(default_factory=list)


class TemplateVersionInfo(_Shape):
    version: int
    lane: str = ""
    created_at: datetime | None = None
    created_by: str | None = None
    current: bool = False


class TemplateSummary(_Shape):
    name: str
    title: str  # plain text: show it as text, never as markup
    description: str = ""
    builtin: bool = False
    current_version: int | None = None  # None: a draft never published (only its owner sees it)
    retired: bool = False
    has_draft: bool = False
    preview_url: str | None = None
    updated_at: datetime | None = None

    @property
    def is_draft(self) -> bool:
        return self.current_version is None


class Template(TemplateSummary):
    """A template with its current version's inputs and outputs, its versions and (for its owner) the
    draft last submitted with that draft's report."""

    retired_at: datetime | None = None
    inputs: list[TemplateInput] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)
    versions: list[TemplateVersionInfo] = Field(default_factory=list)
    draft: dict[str, Any] | None = None
    draft_report: ValidationReport | None = None


class TemplateVersion(_Shape):
    """One published version (immutable); `graph` and `report` only for leads."""

    name: str
    version: int
    lane: str = ""
    created_at: datetime | None = None
    current: bool = False
    inputs: list[TemplateInput] = Field(default_factory=list)
    outputs: dict[str, Any] = Field(default_factory=dict)
    needs: dict[str, Any] = Field(default_factory=dict)
    graph: dict[str, Any] | None = None
    report: ValidationReport | None = None


class Draft(_Shape):
    """A stored draft (POST /api/templates, PUT .../draft) and its report."""

    template: TemplateSummary
    report: ValidationReport


class Publication(_Shape):
    """A publish: the version now current; `created` false when identical content already was it."""

    template: TemplateSummary
    version: int
    created: bool
    report: ValidationReport


def template_list(data: Any) -> list[TemplateSummary]:
    """GET /api/templates answers a list (or a page with `items`)."""
    items = data["items"] if isinstance(data, Mapping) else data
    return [TemplateSummary.model_validate(t) for t in items]


def template_job_body(
    template: str,
    inputs: Mapping[str, Any],
    version: int | None,
    webhook_url: str | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"template": template, "inputs": dict(inputs)}
    if version is not None:
        body["version"] = version
    if webhook_url is not None:
        body["webhook_url"] = webhook_url
    return body


def report_from(data: Any) -> ValidationReport:
    """POST /api/templates/validate's answer: the report, bare or under `report`."""
    if isinstance(data, Mapping) and isinstance(data.get("report"), Mapping):
        data = data["report"]
    return ValidationReport.model_validate(data)


def report_of_problems(details: list[Any]) -> ValidationReport:
    """A 422 `template_invalid`'s details (one per problem) as a failed report."""
    return ValidationReport(ok=False, problems=[Problem.model_validate(d.model_dump()) for d in details])
