"""The model files this deployment pins, as template validation reads them: the base models manifest
(MODELS_MANIFEST, by default the ML server's `mlserver/models.toml`, read as a file: the backend imports
nothing of `mlserver`), the style manifest's LoRAs and the models a lead added (`model_registry`). A
template may only load files listed here (each with its sha256, '' = not pinned yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from backend import model_registry
from backend.config import Settings
from contract.styles import Manifest


@dataclass(frozen=True)
class ModelManifest:
    """(folder, file) -> sha256 of every pinned model file."""

    files: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def has(self, folder: str, name: str) -> bool:
        return (folder, name) in self.files

    def sha256(self, folder: str, name: str) -> str | None:
        return self.files.get((folder, name))


async def pinned_models(session: AsyncSession, settings: Settings, styles: Manifest) -> ModelManifest:
    """Read now: a model a lead added a moment ago is pinned for the template that needs it."""
    pins = await model_registry.pins(session, settings, styles)
    return ModelManifest({key: entry.sha256 for key, entry in pins.items()})
