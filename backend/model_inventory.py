"""The model inventory: per ComfyUI models folder, each file with the instances that have it, its pin
(sha256, size, licence) and the templates and styles that use it. `GET /api/models` answers it.

Sources: the instances' `/models/<folder>` listings (`backend.instances`, every folder `GET /models`
names), the pins (`backend.model_registry.pins`), the current version of every published, unretired
template (`template_versions.needs["models"]`) and the style manifest's LoRA files. A file an instance
could list but does not have is *missing* there; an instance that could not list the folder neither has
nor lacks it (None: unknown).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db import reading
from backend.instances import InstanceState
from backend.models import Template, TemplateVersion
from contract.model_manifest import COMFYUI_FOLDERS, ModelEntry
from contract.styles import Manifest

Key = tuple[str, str]


@dataclass(frozen=True)
class FileRow:
    folder: str
    file: str
    instances: Mapping[str, bool | None]  # instance name → has it (None: could not list the folder)
    pin: ModelEntry | None
    templates: Sequence[str]
    styles: Sequence[str]

    @property
    def missing_on(self) -> list[str]:
        return [name for name, has in self.instances.items() if has is False]


@dataclass(frozen=True)
class Inventory:
    instances: Sequence[InstanceState]
    folders: Mapping[str, list[FileRow]] = field(default_factory=dict)


async def template_uses(session: AsyncSession) -> dict[Key, list[str]]:
    """(folder, file) → names of the published, unretired templates whose current version needs it."""
    query = (
        select(Template.name, TemplateVersion.needs)
        .join(
            TemplateVersion,
            and_(
                TemplateVersion.template_id == Template.id,
                TemplateVersion.version == Template.current_version,
            ),
        )
        .where(Template.retired_at.is_(None))
        .order_by(Template.name)
    )
    async with reading(session):
        rows = (await session.execute(query)).all()
    uses: dict[Key, list[str]] = defaultdict(list)
    for name, needs in rows:
        models = needs.get("models") if isinstance(needs, dict) else None
        for folder, files in (models or {}).items():
            for file in files if isinstance(files, list) else []:
                uses[(str(folder), str(file))].append(name)
    return uses


def style_uses(styles: Manifest) -> dict[Key, list[str]]:
    uses: dict[Key, list[str]] = defaultdict(list)
    for style in styles.styles.values():
        if style.has_lora:
            uses[("loras", style.lora_file)].append(style.id)
    return uses


def known_folders(states: Iterable[InstanceState], pinned: Iterable[Key]) -> set[str]:
    """ComfyUI's own folders, every folder an instance lists (a node pack's) and every pinned one."""
    folders = set(COMFYUI_FOLDERS) | {folder for folder, _ in pinned}
    for state in states:
        folders |= set(state.models)
    return folders


def build(
    states: Sequence[InstanceState],
    pinned: Mapping[Key, ModelEntry],
    templates: Mapping[Key, list[str]],
    styles: Mapping[Key, list[str]],
) -> Inventory:
    """The matrix: every file some instance lists, some manifest pins or something uses."""
    keys: set[Key] = set(pinned) | set(templates) | set(styles)
    for state in states:
        keys |= {(folder, file) for folder, files in state.models.items() for file in files}
    folders: dict[str, list[FileRow]] = defaultdict(list)
    for folder, file in sorted(keys):
        has = {s.name: (file in s.models[folder] if folder in s.models else None) for s in states}
        row = FileRow(
            folder, file, has, pinned.get((folder, file)), templates.get((folder, file), []),
            styles.get((folder, file), []),
        )  # fmt: skip
        folders[folder].append(row)
    return Inventory(states, dict(folders))
