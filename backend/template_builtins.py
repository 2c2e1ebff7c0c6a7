"""The built-in templates (`text`, `sketch`; `product` to place a product in a room; `restyle`, `stage`,
`edit` for a room photo): their declarations ship in `contract/workflows/` and are published at start-up
(prestart, and each API process's lifespan) when their content changed, with this deployment's checkpoint
and ControlNet names. The lanes of `text` and `sketch` are their names (COMFY_UI_ADDRESS `text=`,
`sketch=`), and a legacy `kind` + params body runs them (`template_jobs`). The others need node packs and
models those two do not (comfyui_controlnet_aux, IPAdapter_plus, depth, canny, MLSD and inpaint
ControlNets, CLIP vision, an x4 upscaler): their lane is their needs' (`n:` + hash), like a custom
template's, so they run on every instance, and the SageMaker endpoint, whose inventory covers them.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from backend import templates as service
from backend.config import Settings
from backend.db import SessionMaker
from backend.models import Template, TemplateVersion
from backend.template_jobs import RunnableVersion, runnable_of
from backend.templates import Publication, content_sha256
from contract import templates as contract
from contract.styles import Manifest

logger = logging.getLogger(__name__)


def publications(settings: Settings, manifest: Manifest) -> dict[str, Publication]:
    declarations = contract.builtin_declarations(
        settings.workflows_dir, checkpoint=settings.checkpoint_name, controlnet=settings.controlnet_name
    )
    found = {}
    for name, decl in declarations.items():
        needs = contract.declaration_needs(decl, style_loras=manifest.lora_files)
        effective = contract.effective_constraints(decl, None, manifest.ids)
        lane = name if name in contract.NAMED_LANES else contract.lane_of(needs)
        report: dict[str, Any] = {
            "ok": True,
            "problems": [],
            "warnings": [],
            "needs": needs.to_json(),
            "lane": lane,
        }
        found[name] = Publication(
            title=decl.title,
            description=decl.description,
            spec={**decl.spec(), "effective_constraints": effective},
            needs=needs.to_json(),
            lane=lane,
            report=report,
        )
    return found


async def _current(session: Any, name: str, sha: str) -> tuple[Template, TemplateVersion] | None:
    """The built-in and its current version, when that version already has this content."""
    row = (
        await session.execute(
            select(Template, TemplateVersion)
            .join(TemplateVersion, TemplateVersion.template_id == Template.id)
            .where(Template.name == name, TemplateVersion.version == Template.current_version)
        )
    ).first()
    if row is None or row[1].content_sha256 != sha:
        return None
    return row[0], row[1]


async def _publish_one(maker: SessionMaker, name: str, publication: Publication) -> RunnableVersion:
    sha = content_sha256(publication.spec)
    async with maker() as session:
        async with session.begin():
            current = await _current(session, name, sha)
            if current is not None:
                return runnable_of(*current)
        async with session.begin():
            template = await service.find(session, name)
            if template is None:
                template = Template(
                    name=name, title=publication.title, description=publication.description, builtin=True
                )
                session.add(template)
                await session.flush()
            version, created = await service.publish(session, template, publication, None)
            logger.info(
                "built-in template %s: version %s%s",
                name,
                version.version,
                " published" if created else " current",
                extra={"action": "template_published", "template": name, "version": version.version},
            )
            return runnable_of(template, version)


async def publish_builtins(
    maker: SessionMaker, settings: Settings, manifest: Manifest
) -> dict[str, RunnableVersion]:
    """Publish each built-in whose content changed; name -> the version its legacy jobs run."""
    found = {}
    for name, publication in publications(settings, manifest).items():
        try:
            found[name] = await _publish_one(maker, name, publication)
        except IntegrityError:  # another process published it at the same moment: read what it wrote
            found[name] = await _publish_one(maker, name, publication)
    return found
