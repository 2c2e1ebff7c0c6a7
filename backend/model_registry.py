"""Which model files are pinned, and adding one: the base manifest (`mlserver/models.toml`), the style
LoRAs and the `model_files` rows leads added, whose list is the bucket's added manifest.

An added model is checked as it streams (`backend.model_intake`) into the bucket, then recorded: the row
and the added manifest are written in one transaction, under a lock (PostgreSQL: an advisory lock; SQLite:
its one writer), from every row, so two adds at once cannot leave a manifest that misses one. A refused or
duplicate upload leaves no object behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from backend import audit
from backend.audit import Actor
from backend.config import Settings
from backend.db import reading, writing
from backend.errors import Conflict, InvalidInput, Unavailable
from backend.model_intake import Checked, Intake, model_format, same_file
from backend.model_store import ModelStore, ModelStoreError, ObjectMissing
from backend.models import ModelFile, new_id
from contract.model_manifest import (
    ADDED_MANIFEST_KEY,
    ModelEntry,
    added_name,
    load_models_toml,
    render_added,
    style_entries,
)
from contract.styles import Manifest

MANIFEST_LOCK_KEY = 0x5354_4D4F  # pg_advisory_xact_lock key of the added manifest ("STMO")
READABLE_PREFIXES = ("models/", "loras/")  # what the ML hosts' and the endpoint's roles may read
Key = tuple[str, str]


@dataclass(frozen=True)
class NewModel:
    folder: str
    file: str
    licence: str
    allow_pickle: bool = False


def entry_of(row: ModelFile) -> ModelEntry:
    return ModelEntry(
        added_name(row.folder, row.file),
        row.folder,
        row.file,
        row.s3_key,
        row.sha256,
        row.size_bytes,
        row.licence,
        "added",
    )


async def pins(session: AsyncSession, settings: Settings, styles: Manifest) -> dict[Key, ModelEntry]:
    """Every pinned file by (folder, file): base and style entries first, added rows where those are not."""
    async with reading(session):
        rows = list(await session.scalars(select(ModelFile)))
    pinned: dict[Key, ModelEntry] = {}
    for entry in [*load_models_toml(settings.models_manifest), *style_entries(styles), *map(entry_of, rows)]:
        pinned.setdefault((entry.folder, entry.file), entry)
    return pinned


def _duplicate(pinned: dict[Key, ModelEntry], new: NewModel, checked: Checked) -> ModelEntry | None:
    """The pinned entry this file already is (None: a new file); 409 when the name holds another."""
    entry = pinned.get((new.folder, new.file))
    if entry is None or same_file(entry, checked):
        return entry
    message = (
        f"{new.folder}/{new.file} is already pinned with sha256 {entry.sha256 or '(not pinned yet)'}; "
        f"this file's is {checked.sha256}. Give the new file another name."
    )
    raise Conflict(message, code="model_conflict", details=[{"field": "file", "message": message}])


async def record(
    session: AsyncSession, store: ModelStore, row: ModelFile, actor: Actor, ip: str = ""
) -> tuple[ModelEntry, bool]:
    """The row stored, its audit line written and the added manifest rewritten, in one transaction; or
    the row already there (created False, nothing audited)."""
    async with writing(session):
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MANIFEST_LOCK_KEY})
        existing = await session.scalar(
            select(ModelFile).where(ModelFile.folder == row.folder, ModelFile.file == row.file)
        )
        if existing is not None:
            checked = Checked(row.sha256, row.size_bytes, row.tensors)
            _duplicate({(row.folder, row.file): entry_of(existing)}, _new(row), checked)
            return entry_of(existing), False
        session.add(row)
        await session.flush()
        details = {"folder": row.folder, "file": row.file, "sha256": row.sha256, "size_bytes": row.size_bytes,
                   "licence": row.licence, "format": row.format}  # fmt: skip
        target = ("model", f"{row.folder}/{row.file}")
        audit.record(session, "model_added", actor, target=target, ip=ip, details=details)
        rows = list(await session.scalars(select(ModelFile)))
        try:
            await store.put_text(ADDED_MANIFEST_KEY, render_added([entry_of(r) for r in rows]))
        except ModelStoreError as exc:
            raise Unavailable(
                f"The added model manifest could not be written: {exc}", code="models_bucket_unavailable"
            ) from exc
    return entry_of(row), True


def _new(row: ModelFile) -> NewModel:
    return NewModel(row.folder, row.file, row.licence)


def _row(new: NewModel, fmt: str, key: str, checked: Checked, designer_id: str) -> ModelFile:
    return ModelFile(
        folder=new.folder,
        file=new.file,
        s3_key=key,
        sha256=checked.sha256,
        size_bytes=checked.size_bytes,
        licence=new.licence,
        format=fmt,
        tensors=checked.tensors,
        added_by=designer_id,
    )


@dataclass
class Adding:
    """What an add needs: the request's session, the bucket, settings, the pins and known folders."""

    session: AsyncSession
    store: ModelStore
    settings: Settings
    pinned: dict[Key, ModelEntry]
    folders: Collection[str]
    designer_id: str
    designer_name: str = ""
    ip: str = ""  # the request's client, for the audit line

    @property
    def actor(self) -> Actor:
        return Actor(self.designer_id, self.designer_name)

    async def upload(
        self, new: NewModel, chunks: AsyncIterator[bytes], declared_size: int | None
    ) -> tuple[ModelEntry, bool]:
        """An upload streamed into the bucket under a key of its own, checked as it goes."""
        fmt = model_format(new.folder, new.file, new.allow_pickle, self.folders)
        intake = Intake(fmt, self.settings.model_upload_max_bytes, declared_size)
        key = f"{self.settings.models_added_prefix}{new.folder}/{new_id()}/{new.file}"
        writer = self.store.writer(key)
        try:
            async for chunk in chunks:
                intake.feed(chunk)
                await writer.write(chunk)
            checked = intake.finish()
            if (known := _duplicate(self.pinned, new, checked)) is not None:
                await writer.abort()
                return known, False
            await writer.complete()
        except ModelStoreError as exc:
            await writer.abort()
            raise Unavailable(
                f"The model could not be stored: {exc}", code="models_bucket_unavailable"
            ) from exc
        except BaseException:
            await writer.abort()
            raise
        return await self._record_or_forget(_row(new, fmt, key, checked, self.designer_id))

    async def _record_or_forget(self, row: ModelFile) -> tuple[ModelEntry, bool]:
        try:
            entry, created = await record(self.session, self.store, row, self.actor, self.ip)
        except BaseException:
            await self._forget(row.s3_key)
            raise
        if not created:
            await self._forget(row.s3_key)
        return entry, created

    async def _forget(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except ModelStoreError:
            pass  # an orphan object under models/added/: harmless, listed by nothing

    async def by_key(self, new: NewModel, key: str) -> tuple[ModelEntry, bool]:
        """An object already in the bucket (under models/ or loras/), read and checked where it is."""
        fmt = model_format(new.folder, new.file, new.allow_pickle, self.folders)
        check_key(key)
        try:
            size = await self.store.size(key)
            intake = Intake(fmt, self.settings.model_upload_max_bytes, size)
            async for chunk in self.store.read(key):
                intake.feed(chunk)
        except ObjectMissing as exc:
            message = f"s3://{self.store.bucket}/{key} does not exist."
            raise InvalidInput(
                message, code="s3_object_missing", details=[{"field": "s3_key", "message": message}]
            ) from exc
        except ModelStoreError as exc:
            raise Unavailable(
                f"The model could not be read: {exc}", code="models_bucket_unavailable"
            ) from exc
        checked = intake.finish()
        if (known := _duplicate(self.pinned, new, checked)) is not None:
            return known, False
        row = _row(new, fmt, key, checked, self.designer_id)
        entry, created = await record(self.session, self.store, row, self.actor, self.ip)
        return entry, created


def check_key(key: str) -> None:
    """A key the ML hosts may read, naming a file: not the added manifest, no `..` or empty segment."""
    parts = key.split("/")
    if (
        not key.startswith(READABLE_PREFIXES)
        or key == ADDED_MANIFEST_KEY
        or any(p in ("", ".", "..") for p in parts)
        or len(key) > 1024
        or not key.isprintable()
    ):
        message = f"{key!r} must be a file's key under {' or '.join(READABLE_PREFIXES)} in the models bucket."
        raise InvalidInput(
            message, code="s3_key_outside_models", details=[{"field": "s3_key", "message": message}]
        )
