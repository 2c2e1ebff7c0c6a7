"""A job made from a template version: its input values validated by the version's generated model, its
uploads checked, its graph filled and stored at creation (DESIGN §2, §4).

The legacy body (`kind: text|sketch` + params) is the built-in template of that name with the params as
its input values (the built-ins' input keys are the legacy param names), so both paths end here. A
version never changes: what is read of one (spec, lane, its input model) is kept per process.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from backend import job_queue
from backend import templates as service
from backend.auth import Principal
from backend.db import reading
from backend.errors import InvalidInput, NotFound
from backend.models import Job, Template, TemplateVersion, Upload, new_id
from backend.schemas import MAX_SEED
from backend.upload_roles import required_role_error
from contract import templates as contract
from contract.styles import Manifest

LEGACY_ONLY = ("kind",)  # legacy params that are no input of the built-ins
# A mask refused as empty covers less than this share of its photo; as full, more than this one.
MASK_MIN_COVERAGE = 0.0005
MASK_MAX_COVERAGE = 0.995


@dataclass(frozen=True)
class RunnableVersion:
    """What a job needs of a template version (immutable, so its parsed declaration and input model are
    kept per process, by version id)."""

    name: str
    title: str
    version_id: str
    number: int
    lane: str
    spec: dict[str, Any]


_NUMBERS: dict[str, int] = {}  # version id -> its number (immutable): what a new job's answer shows


def number_of(version_id: str | None) -> int | None:
    """The number of a version this process has loaded (every job's version was, to build the job)."""
    return _NUMBERS.get(version_id) if version_id is not None else None


def runnable_of(template: Template, version: TemplateVersion) -> RunnableVersion:
    if len(_NUMBERS) > 10_000:
        _NUMBERS.clear()
    _NUMBERS[version.id] = version.version
    return RunnableVersion(
        template.name, template.title, version.id, version.version, version.lane, version.spec
    )


@dataclass(frozen=True)
class _Parsed:
    declaration: contract.Declaration
    model: type[BaseModel]


_PARSED: dict[str, _Parsed] = {}


def parsed(version: RunnableVersion, style_ids: list[str]) -> _Parsed:
    found = _PARSED.get(version.version_id)
    if found is None:
        doc = {k: version.spec[k] for k in ("graph", "inputs", "outputs")}
        declaration = contract.parse_declaration({"name": version.name, "title": version.title, **doc})
        model = contract.input_model(declaration, None, style_ids=style_ids)
        found = _PARSED[version.version_id] = _Parsed(declaration, model)
    return found


def _invalid_inputs(exc: ValidationError) -> InvalidInput:
    details = []
    for err in exc.errors():
        loc = [str(p).removeprefix("v_") for p in err.get("loc", ())]
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        details.append({"field": ".".join(["inputs", *loc]), "message": message, "type": err.get("type")})
    first = details[0]
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return InvalidInput(f"{first['field']}: {first['message']}{more}", details=details)


def validated_inputs(
    version: RunnableVersion, values: Mapping[str, Any], style_ids: list[str]
) -> dict[str, Any]:
    """The values as the version's generated model reads them (422, `inputs.<key>` paths, when not)."""
    model = parsed(version, style_ids).model
    try:
        return contract.validate_values(model, values)
    except ValidationError as exc:
        raise _invalid_inputs(exc) from None


def _declared(version: RunnableVersion, kind: str) -> list[dict[str, Any]]:
    return [d for d in version.spec.get("inputs") or [] if d.get("kind") == kind]


async def image_uploads(
    session: AsyncSession, designer: Principal, version: RunnableVersion, values: Mapping[str, Any]
) -> dict[str, Upload]:
    """Each image input's upload (the designer's own, 404 `unknown_upload` otherwise), sizes checked."""
    found: dict[str, Upload] = {}
    for decl in _declared(version, "image"):
        upload_id = values.get(decl["key"])
        if upload_id is None:
            continue
        async with reading(session):
            upload = await session.get(Upload, upload_id)
        if upload is None or upload.designer_id != designer.id:
            field = "upload_id" if decl["key"] == "upload_id" else f"inputs.{decl['key']}"
            raise NotFound(
                f"{field} does not name one of your uploads",
                code="unknown_upload",
                details=[{"field": field, "message": "no such upload"}],
            )
        required_role = decl.get("role")
        wrong = required_role_error(upload.role, required_role) if required_role else None
        if wrong is not None:
            raise InvalidInput(
                f"inputs.{decl['key']}: {wrong}",
                code="wrong_upload_role",
                details=[{"field": f"inputs.{decl['key']}", "message": wrong}],
            )
        limits = decl.get("constraints") or {}
        min_width, min_height = limits.get("min_width") or 0, limits.get("min_height") or 0
        if upload.width < min_width or upload.height < min_height:
            raise InvalidInput(
                f"inputs.{decl['key']}: the image is {upload.width}x{upload.height}; this template needs at "
                f"least {min_width}x{min_height}",
                code="image_too_small",
                details=[{"field": f"inputs.{decl['key']}", "message": "image too small"}],
            )
        found[decl["key"]] = upload
    for decl in _declared(version, "image"):
        upload = found.get(decl["key"])
        if upload is not None and decl.get("upload"):
            check_upload_block(decl["key"], decl["upload"], upload, found)
    return found


def _refused(key: str, message: str, code: str) -> InvalidInput:
    return InvalidInput(
        f"inputs.{key}: {message}", code=code, details=[{"field": f"inputs.{key}", "message": message}]
    )


def check_upload_block(
    key: str, block: Mapping[str, Any], upload: Upload, found: Mapping[str, Upload]
) -> None:
    """An upload against its input's `upload` block: its role; a mask's size (its photo's) and coverage."""
    why = required_role_error(upload.role, str(block["role"]))
    if why is not None:
        raise _refused(key, why, "wrong_upload_role")
    photo = found.get(block.get("mask_of") or "")
    if photo is not None and (upload.width, upload.height) != (photo.width, photo.height):
        message = (
            f"the mask is {upload.width}x{upload.height}; its photo is {photo.width}x{photo.height} "
            "(paint the mask on the photo itself)"
        )
        raise _refused(key, message, "mask_size_mismatch")
    coverage = float((upload.cutout or {}).get("coverage", 0.5))
    if block.get("refuse_empty") and coverage < MASK_MIN_COVERAGE:
        raise _refused(key, "the mask is empty: paint the region first", "mask_empty")
    if block.get("refuse_full") and coverage > MASK_MAX_COVERAGE:
        raise _refused(key, "the mask covers the whole photo: leave some of it out", "mask_full")


def style_of(version: RunnableVersion, values: Mapping[str, Any]) -> str:
    decls = _declared(version, "style")
    return str(values.get(decls[0]["key"]) or "none") if decls else "none"


def seed_key(version: RunnableVersion) -> str | None:
    decls = _declared(version, "seed")
    return str(decls[0]["key"]) if decls else None


def build(
    version: RunnableVersion,
    designer: Principal,
    values: dict[str, Any],
    uploads: Mapping[str, Upload],
    manifest: Manifest,
    *,
    params: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
    retry_of: str | None = None,
) -> Job:
    """The job row with its filled graph (nothing is written yet). `params`: what the job shows as its
    params (the legacy dict for a legacy body; the input values otherwise)."""
    key = seed_key(version)
    if key is not None and values.get(key) is None:
        values[key] = secrets.randbelow(MAX_SEED + 1)
    seed = int(values[key]) if key is not None else 0
    style = style_of(version, values)
    job_id = new_id()
    images = {k: contract.ImageRef(f"uploads/{u.sha256}.png", u.dark_lines) for k, u in uploads.items()}
    declaration = parsed(version, manifest.ids).declaration
    graph = contract.fill(declaration, values, manifest, images, job_id)
    shown = {**(params if params is not None else values)}
    if key is not None and key in shown:
        shown[key] = seed
    first_upload = next(iter(uploads.values()), None)
    style_row = manifest.styles.get(style)
    job = Job(
        id=job_id,
        designer_id=designer.id,
        kind=version.name,
        lane=version.lane,
        template_version_id=version.version_id,
        style=style,
        seed=seed,
        params=shown,
        params_hash=job_queue.params_hash(shown),
        lora_name=style_row.lora_file if style_row is not None else "",
        upload_id=first_upload.id if first_upload is not None else None,
        idempotency_key=idempotency_key,
        retry_of=retry_of,
        graph=graph,
    )
    # Shown by `job_out` without a query (a plain attribute, not a column).
    setattr(job, "template_version", version.number)  # noqa: B010
    return job


async def load_version(session: AsyncSession, version_id: str) -> RunnableVersion | None:
    async with reading(session):
        row = (
            await session.execute(
                select(Template, TemplateVersion)
                .join(TemplateVersion, TemplateVersion.template_id == Template.id)
                .where(TemplateVersion.id == version_id)
            )
        ).first()
    return runnable_of(row[0], row[1]) if row is not None else None


async def resolve(
    session: AsyncSession, name: str, number: int | None, *, pinned: bool = False
) -> RunnableVersion:
    async with reading(session):
        template, version = await service.runnable(session, name, number, pinned=pinned)
        return runnable_of(template, version)


def legacy_values(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in LEGACY_ONLY}
