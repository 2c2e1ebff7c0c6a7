"""Pydantic request and response models of the templates API (`backend/api/templates.py`) and of a job
started from a template: the contract the studio's templates pages are written against (DESIGN §4)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,39}$"
INPUT_KEY_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


class Problem(BaseModel):
    """One thing wrong with a template: where (field path, node, class, input, instance) and why."""

    model_config = ConfigDict(extra="allow")

    code: str = Field(description="stable snake_case, e.g. unknown_class, model_missing, dry_run_failed")
    message: str = Field(description="a sentence naming the node, class, input and instance concerned")
    field: str | None = Field(None, description="path in the declaration, e.g. graph.12.inputs.seed")
    node_id: str | None = None
    class_type: str | None = None
    input: str | None = None
    instance: str | None = Field(None, description="host:port of the ComfyUI instance concerned")


class InstanceVerdict(BaseModel):
    instance: str = Field(description="host:port")
    covers: bool = Field(description="true: this instance can run the template's jobs")
    reasons: list[str] = Field(default_factory=list, description="why not (missing class or file)")


class DryRun(BaseModel):
    status: Literal["passed", "failed", "skipped"]
    message: str = ""
    node_errors: dict[str, Any] = Field(default_factory=dict, description="ComfyUI's, when it refused")
    images: dict[str, list[dict[str, str]]] = Field(
        default_factory=dict,
        description="result node id -> the images it saved on the sandbox (filename, subfolder, type: "
        "GET /view on the sandbox)",
    )


class Report(BaseModel):
    """The validation report of a declaration against the instances as they are now."""

    ok: bool
    problems: list[Problem] = Field(default_factory=list, description="each one blocks publishing")
    warnings: list[Problem] = Field(default_factory=list, description="worth reading; publishing goes on")
    instances: list[InstanceVerdict] = Field(default_factory=list)
    needs: dict[str, Any] = Field(default_factory=dict, description="node classes and model files by folder")
    lane: str | None = Field(None, description="where its jobs are claimed (n:<hash of the needs>)")
    dry_run: DryRun = Field(default_factory=lambda: DryRun(status="skipped"))


class VersionSummary(BaseModel):
    version: int
    lane: str
    created_at: datetime
    created_by: str | None = Field(None, description="the lead's name")
    current: bool


class TemplateInputOut(BaseModel):
    """A declared input as a form shows it: constraints are the effective ones (spec ∩ narrowing)."""

    model_config = ConfigDict(extra="allow")

    key: str
    label: str
    help: str = ""
    kind: str
    default: Any = None
    required: bool = True
    constraints: dict[str, Any] = Field(default_factory=dict)


class TemplateSummary(BaseModel):
    name: str
    title: str = Field(description="plain text: show it as text, never as markup")
    description: str
    builtin: bool
    current_version: int | None = Field(description="null: a draft never published (its owner sees it)")
    retired: bool
    has_draft: bool = Field(description="an unpublished declaration is stored (its owner sees it)")
    preview_url: str | None = None
    updated_at: datetime


class TemplateList(BaseModel):
    items: list[TemplateSummary]


class TemplateOut(TemplateSummary):
    retired_at: datetime | None
    inputs: list[TemplateInputOut] = Field(description="the current version's, with effective constraints")
    outputs: dict[str, Any] = Field(default_factory=dict)
    versions: list[VersionSummary]
    draft: dict[str, Any] | None = Field(None, description="the owner's unpublished declaration")
    draft_report: Report | None = None


class VersionOut(BaseModel):
    name: str
    version: int
    lane: str
    created_at: datetime
    current: bool
    inputs: list[TemplateInputOut]
    outputs: dict[str, Any]
    needs: dict[str, Any]
    graph: dict[str, Any] | None = Field(None, description="leads only")
    report: Report | None = Field(None, description="leads only: the report it was published with")


class DraftOut(BaseModel):
    """The stored draft and its report (POST /api/templates, PUT .../draft)."""

    template: TemplateSummary
    report: Report


class PublishOut(BaseModel):
    template: TemplateSummary
    version: int
    created: bool = Field(description="false: identical content was already that version")
    report: Report


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = Field(ge=1)


class TemplateJobCreate(BaseModel):
    """POST /api/jobs from a template (the legacy body is the built-in `text`/`sketch` templates')."""

    model_config = ConfigDict(extra="forbid")

    template: str = Field(pattern=NAME_PATTERN, description="a template name from /api/templates")
    version: int | None = Field(None, ge=1, description="null: the current version")
    inputs: dict[str, Any] = Field(
        default_factory=dict, description="values by input key (see the template's inputs)"
    )
    webhook_url: str | None = Field(None, max_length=2000, description="as the legacy body's webhook_url")
