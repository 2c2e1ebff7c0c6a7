"""Model sync against a moto S3 server on loopback: fresh, cached, corrupt, interrupted, missing, unpinned."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from backend.api.health import _check_models
from contract.styles import ManifestError
from mlserver.model_sync import Entry, Options, Status, in_folders, load_entries, main, sync
from tests.support.aws import MotoServer

BUCKET = "studio-models"
ROOT = Path(__file__).resolve().parents[2]


def blob(seed: int, size: int = 300_000) -> bytes:
    return hashlib.shake_256(str(seed).encode()).digest(size)


def entry(name: str, folder: str, data: bytes, key: str | None = None, **overrides: Any) -> Entry:
    values: dict[str, Any] = {
        "name": name,
        "folder": folder,
        "file": f"{name}.safetensors",
        "s3_key": key or f"models/{folder}/{name}.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
    }
    return Entry(**(values | overrides))


@dataclass
class Models:
    s3: Any
    entries: list[Entry]
    data: dict[str, bytes]
    models_dir: Path
    marker: Path

    def run(self, s3: Any = None, entries: list[Entry] | None = None, **options: Any) -> dict[str, Any]:
        results = sync(
            s3 or self.s3,
            BUCKET,
            entries or self.entries,
            self.models_dir,
            self.marker,
            Options(**({"sleep": lambda s: None} | options)),
        )
        return {r.entry.name: r for r in results}


@pytest.fixture
def models(moto: MotoServer, tmp_path: Path) -> Models:
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    data = {"checkpoint": blob(1), "controlnet": blob(2), "indochine": blob(3, 120_000)}
    entries = [
        entry("checkpoint", "checkpoints", data["checkpoint"]),
        entry("controlnet", "controlnet", data["controlnet"]),
        entry("indochine", "loras", data["indochine"], key="loras/indochine/v1/indochine.safetensors"),
    ]
    for e in entries:
        s3.put_object(Bucket=BUCKET, Key=e.s3_key, Body=data[e.name], Metadata={"sha256": e.sha256})
    return Models(s3, entries, data, tmp_path / "models", tmp_path / "models" / ".synced.json")


def leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.rglob("*.partial"))


def test_a_fresh_sync_puts_every_model_in_its_folder_then_keeps_it(models: Models) -> None:
    results = models.run()
    assert {n: r.status for n, r in results.items()} == dict.fromkeys(models.data, "downloaded")
    for e in models.entries:
        assert e.path(models.models_dir).read_bytes() == models.data[e.name]
    assert (models.models_dir / "loras" / "indochine.safetensors").exists()
    marker = json.loads(models.marker.read_text())
    assert marker["ok"] is True
    assert sorted(marker["models"], key=lambda m: m["file"]) == sorted(
        (
            {"file": e.file, "folder": e.folder, "sha256": e.sha256, "size_bytes": e.size_bytes}
            for e in models.entries
        ),
        key=lambda m: m["file"],
    )
    assert _check_models(models.marker)["ok"] is True

    before = {e.name: e.path(models.models_dir).stat().st_ino for e in models.entries}
    again = models.run()
    assert {n: r.status for n, r in again.items()} == dict.fromkeys(models.data, "cached")
    assert {e.name: e.path(models.models_dir).stat().st_ino for e in models.entries} == before


def test_a_corrupt_object_is_refused_and_the_others_still_sync(models: Models) -> None:
    bad = models.entries[1]
    models.s3.put_object(Bucket=BUCKET, Key=bad.s3_key, Body=blob(99, bad.size_bytes))  # no metadata
    results = models.run()
    assert results["controlnet"].status == "failed"
    assert "sha256" in results["controlnet"].detail and bad.sha256 in results["controlnet"].detail
    assert not bad.path(models.models_dir).exists()
    assert results["checkpoint"].ok and results["indochine"].ok
    assert leftovers(models.models_dir) == []
    assert not models.marker.exists()
    assert _check_models(models.marker)["ok"] is False


def test_published_metadata_that_contradicts_the_manifest_is_refused_before_download(models: Models) -> None:
    e = models.entries[0]
    models.s3.put_object(Bucket=BUCKET, Key=e.s3_key, Body=models.data[e.name], Metadata={"sha256": "0" * 64})
    result = models.run(entries=[e])["checkpoint"]
    assert result.status == "failed" and "published with sha256 000" in result.detail
    assert not e.path(models.models_dir).exists()


def test_a_file_corrupted_on_disk_is_downloaded_again(models: Models) -> None:
    models.run()
    target = models.entries[0].path(models.models_dir)
    damaged = bytearray(target.read_bytes())
    damaged[1000] ^= 0xFF
    target.write_bytes(bytes(damaged))  # same size, new mtime: the sidecar no longer vouches for it
    results = models.run()
    assert results["checkpoint"].status == "downloaded"
    assert target.read_bytes() == models.data["checkpoint"]
    assert results["controlnet"].status == "cached"


def test_a_missing_object_names_its_key(models: Models) -> None:
    models.s3.delete_object(Bucket=BUCKET, Key=models.entries[2].s3_key)
    result = models.run()["indochine"]
    assert result.status == "failed"
    assert f"s3://{BUCKET}/loras/indochine/v1/indochine.safetensors does not exist" in result.detail
    assert not models.marker.exists()


def test_an_unpinned_model_is_refused(models: Models) -> None:
    unpinned = entry("checkpoint", "checkpoints", models.data["checkpoint"], sha256="")
    result = models.run(entries=[unpinned])["checkpoint"]
    assert result.status == "failed" and "no sha256 pinned" in result.detail
    assert "--allow-unpinned" in result.detail
    assert not unpinned.path(models.models_dir).exists() and not models.marker.exists()


def test_allow_unpinned_downloads_and_reports_the_sha256_but_never_marks_ready(models: Models) -> None:
    e = models.entries[0]
    unpinned = entry("checkpoint", "checkpoints", models.data["checkpoint"], sha256="", size_bytes=0)
    results = models.run(entries=[unpinned, *models.entries[1:]], allow_unpinned=True)
    assert results["checkpoint"].status == Status.UNPINNED and not results["checkpoint"].ok
    assert f"sha256 = '{e.sha256}', size_bytes = {e.size_bytes}" in results["checkpoint"].detail
    assert e.path(models.models_dir).read_bytes() == models.data["checkpoint"]
    assert results["controlnet"].status == "downloaded"
    assert not models.marker.exists()
    refused = models.run(entries=[unpinned], allow_unpinned=True, verify_only=True)["checkpoint"]
    assert refused.status == "failed" and "no sha256 pinned" in refused.detail


def test_an_unpinned_download_is_still_checked_against_the_published_metadata(models: Models) -> None:
    e = models.entries[0]
    models.s3.put_object(
        Bucket=BUCKET, Key=e.s3_key, Body=blob(98, e.size_bytes), Metadata={"sha256": e.sha256}
    )
    unpinned = entry("checkpoint", "checkpoints", models.data["checkpoint"], sha256="", size_bytes=0)
    result = models.run(entries=[unpinned], allow_unpinned=True, attempts=2)["checkpoint"]
    assert result.status == "failed" and f"expected {e.sha256}" in result.detail
    assert not e.path(models.models_dir).exists() and leftovers(models.models_dir) == []


def test_verify_only_downloads_nothing(models: Models) -> None:
    results = models.run(s3=object(), verify_only=True)
    assert all(r.status == "failed" and "is not there" in r.detail for r in results.values())
    models.run()
    assert all(r.status == "cached" for r in models.run(s3=object(), verify_only=True).values())
    assert models.marker.exists()


def test_an_unchanged_file_is_trusted_from_its_sidecar_and_a_touched_one_is_hashed_again(
    models: Models,
) -> None:
    models.run()
    target = models.entries[0].path(models.models_dir)
    sidecar = json.loads(target.with_name(f".{target.name}.sha256").read_text())
    assert sidecar["sha256"] == models.entries[0].sha256 and sidecar["size"] == len(models.data["checkpoint"])
    stat = target.stat()
    target.write_bytes(blob(97, stat.st_size))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    # Same size and mtime: the sidecar vouches, so the (now wrong) bytes were not hashed at all.
    assert models.run()["checkpoint"].status == "cached"
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert models.run()["checkpoint"].status == "downloaded"
    assert target.read_bytes() == models.data["checkpoint"]


def test_progress_is_logged_per_entry_and_in_percent(
    models: Models, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mlserver.model_sync")
    models.run(entries=[models.entries[0]], progress_every_bytes=100_000, chunk_bytes=64 * 1024)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("checkpoint: downloading s3://") for m in messages)
    percents = [int(m.split()[1].rstrip("%")) for m in messages if m.startswith("checkpoint: ") and "%" in m]
    assert len(percents) >= 2 and percents == sorted(percents) and percents[-1] == 100
    assert "checkpoint: downloaded and verified" in messages
    caplog.clear()
    models.run(entries=[models.entries[0]])
    assert "checkpoint: ok, cached" in [r.getMessage() for r in caplog.records]


def test_a_partial_file_left_by_a_killed_run_is_removed(models: Models) -> None:
    stale = models.models_dir / "checkpoints" / ".old_v0.safetensors.partial"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a checkpoint")
    assert all(r.ok for r in models.run().values())
    assert leftovers(models.models_dir) == []


def write_styles(path: Path, **loras: tuple[str, str]) -> Path:
    tables = "".join(
        f'[styles.{sid}]\ndisplay_name = "{sid}"\ndescription = "x"\nversion = "v1"\n'
        f'lora_file = "{file}"\nsha256 = "{sha}"\nsize_bytes = 10\ns3_key = "loras/{file}"\n\n'
        for sid, (file, sha) in loras.items()
    )
    path.write_text(f'schema_version = 1\ndefault_style = "{next(iter(loras))}"\n\n{tables}')
    return path


def test_styles_sharing_a_lora_file_sync_it_once_and_a_clash_is_refused(tmp_path: Path) -> None:
    models_toml = tmp_path / "models.toml"
    models_toml.write_text("schema_version = 1\n")
    same = write_styles(
        tmp_path / "same.toml", a=("shared.safetensors", "a" * 64), b=("shared.safetensors", "a" * 64)
    )
    assert [(e.folder, e.file) for e in load_entries(models_toml, same)] == [("loras", "shared.safetensors")]
    clash = write_styles(
        tmp_path / "clash.toml", a=("shared.safetensors", "a" * 64), b=("shared.safetensors", "b" * 64)
    )
    with pytest.raises(ManifestError, match=r"both want loras/shared\.safetensors"):
        load_entries(models_toml, clash)


def test_a_model_file_must_be_a_bare_name(tmp_path: Path) -> None:
    models_toml = tmp_path / "models.toml"
    models_toml.write_text('[models.x]\nfolder = "checkpoints"\nfile = "../../etc/x"\ns3_key = "k"\n')
    with pytest.raises(ManifestError, match="bare names"):
        load_entries(models_toml, write_styles(tmp_path / "s.toml", a=("a.safetensors", "a" * 64)))


def test_the_command_line_refuses_bad_usage_before_touching_s3(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("MODELS_BUCKET", raising=False)
    assert main(["--models-dir", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["--bucket", "b", "--models-dir", str(tmp_path), "--jobs", "0"])
    assert exit_info.value.code == 2


@dataclass
class CuttingProxy:
    """A TCP proxy in front of moto that cuts the body of the first `cuts` object downloads mid-way.

    `clean_short`: instead of dropping the connection, end the response cleanly with a Content-Length
    rewritten to the bytes sent and no checksum headers (a misbehaving middlebox, or an S3-compatible store
    without flexible checksums), which only the sync's own size check notices.
    """

    upstream_port: int
    cuts: int
    clean_short: bool = False
    cut_after_bytes: int = 50_000
    port: int = 0
    cut_done: int = 0
    _sock: socket.socket = field(default_factory=socket.socket)

    def start(self) -> CuttingProxy:
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()
        return self

    def stop(self) -> None:
        self._sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            request = self._read_request(conn)
            if request is None:
                return
            head, body = request.split(b"\r\n\r\n", 1)
            lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
            forwarded = b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as up:
                up.sendall(forwarded)
                response = b"".join(iter(lambda: up.recv(65536), b""))
            resp_head, resp_body = response.split(b"\r\n\r\n", 1)
            resp_lines = [ln for ln in resp_head.split(b"\r\n") if not ln.lower().startswith(b"connection:")]
            out = b"\r\n".join([*resp_lines, b"Connection: close"]) + b"\r\n\r\n"
            is_download = lines[0].startswith(b"GET ") and b"safetensors" in lines[0]
            if is_download and self.cut_done < self.cuts and len(resp_body) > self.cut_after_bytes:
                self.cut_done += 1
                if self.clean_short:
                    out = self._shortened_head(out)
                conn.sendall(out + resp_body[: self.cut_after_bytes])
                return  # closed mid-body: the client sees a short read
            conn.sendall(out + resp_body)

    def _shortened_head(self, head: bytes) -> bytes:
        """Content-Length says the cut length; the checksum headers botocore would verify are gone."""
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"x-amz-checksum")]
        return b"\r\n".join(
            b"Content-Length: %d" % self.cut_after_bytes if ln.lower().startswith(b"content-length:") else ln
            for ln in lines
        )

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        length = 0
        for line in head.split(b"\r\n"):
            if line.startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(data.split(b"\r\n\r\n", 1)[1]) < length:
            data += conn.recv(65536)
        return data


@pytest.fixture
def proxy_for(moto: MotoServer) -> Iterator[Any]:
    proxies: list[CuttingProxy] = []

    def make(cuts: int, clean_short: bool = False) -> tuple[CuttingProxy, Any]:
        upstream = int(moto.endpoint_url.rsplit(":", 1)[1])
        proxy = CuttingProxy(upstream, cuts, clean_short).start()
        proxies.append(proxy)
        return proxy, MotoServer(f"http://127.0.0.1:{proxy.port}").client("s3")

    yield make
    for p in proxies:
        p.stop()


def test_an_interrupted_download_is_retried_and_the_file_is_whole(models: Models, proxy_for: Any) -> None:
    proxy, s3 = proxy_for(cuts=1)
    result = models.run(s3=s3, entries=[models.entries[0]], attempts=3)["checkpoint"]
    assert proxy.cut_done == 1
    assert result.status == "downloaded" and result.detail == "attempt 2"
    assert models.entries[0].path(models.models_dir).read_bytes() == models.data["checkpoint"]
    assert leftovers(models.models_dir) == [] and models.marker.exists()


def test_a_response_that_ends_cleanly_but_short_is_refused_and_retried(
    models: Models, proxy_for: Any, caplog: pytest.LogCaptureFixture
) -> None:
    proxy, s3 = proxy_for(cuts=1, clean_short=True)
    result = models.run(s3=s3, entries=[models.entries[0]])["checkpoint"]
    assert proxy.cut_done == 1
    assert result.status == "downloaded" and result.detail == "attempt 2"
    assert (
        f"checkpoint: received 50000 of {models.entries[0].size_bytes} bytes (attempt 1 of 3)" in caplog.text
    )
    assert models.entries[0].path(models.models_dir).read_bytes() == models.data["checkpoint"]


def test_a_download_cut_every_time_fails_and_leaves_nothing(models: Models, proxy_for: Any) -> None:
    proxy, s3 = proxy_for(cuts=1000)
    sleeps: list[float] = []
    result = models.run(s3=s3, entries=[models.entries[0]], attempts=3, sleep=sleeps.append)["checkpoint"]
    assert proxy.cut_done >= 3
    assert sleeps == [1.0, 2.0]  # exponential back-off between the three attempts, none after the last
    assert result.status == "failed" and "interrupted" in result.detail
    assert not models.entries[0].path(models.models_dir).exists()
    assert leftovers(models.models_dir) == [] and not models.marker.exists()


def test_the_real_manifests_list_the_base_models_and_every_style_lora() -> None:
    entries = {e.name: e for e in load_entries(ROOT / "mlserver" / "models.toml", None)}
    assert entries["checkpoint"].file == "interiordesignsuperm_v2.safetensors"
    assert entries["checkpoint"].folder == "checkpoints"
    assert entries["controlnet_scribble"].folder == "controlnet"
    assert {n for n in entries if n.startswith("lora:")} == {"lora:indochine", "lora:minimalist"}
    assert entries["lora:indochine"].s3_key.startswith("loras/indochine/")


def test_the_command_line_syncs_from_s3_and_exits_0(models: Models, moto: MotoServer, tmp_path: Path) -> None:
    manifest = tmp_path / "models.toml"
    manifest.write_text(
        "".join(
            f'[models.{e.name}]\nfolder = "{e.folder}"\nfile = "{e.file}"\ns3_key = "{e.s3_key}"\n'
            f'sha256 = "{e.sha256}"\nsize_bytes = {e.size_bytes}\n\n'
            for e in models.entries[:2]
        )
    )
    styles = tmp_path / "styles.toml"
    real = (ROOT / "loras" / "styles.toml").read_text()
    styles.write_text('schema_version = 1\ndefault_style = "none"\n' + real[real.index("[styles.none]") :])
    cmd = [
        sys.executable,
        "-m",
        "mlserver.model_sync",
        "--bucket",
        BUCKET,
        "--models-dir",
        str(models.models_dir),
        "--marker",
        str(models.marker),
        "--models-manifest",
        str(manifest),
        "--style-manifest",
        str(styles),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2 of 2 verified" in done.stdout
    assert _check_models(models.marker)["ok"] is True
    models.s3.delete_object(Bucket=BUCKET, Key=models.entries[0].s3_key)
    models.entries[0].path(models.models_dir).unlink()
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), cwd=ROOT, timeout=60)
    assert done.returncode == 1 and "FAILED" in done.stdout and not models.marker.exists()


def test_the_added_manifest_is_merged_checked_and_a_refresh_keeps_the_marker(
    models: Models, moto: MotoServer, tmp_path: Path
) -> None:
    from contract.model_manifest import ADDED_MANIFEST_KEY, render_added
    from mlserver.model_sync import fetch_added

    assert fetch_added(models.s3, BUCKET, ADDED_MANIFEST_KEY) == []  # none added yet
    models.run()
    added = entry("brass", "loras", blob(7, 5000), key="models/added/loras/1/brass.safetensors")
    added = Entry(
        **{
            **added.__dict__,
            "licence": "apache-2.0",
            "source": "added",
            "name": "added:loras/brass.safetensors",
        }
    )
    models.s3.put_object(Bucket=BUCKET, Key=added.s3_key, Body=blob(7, 5000))
    models.s3.put_object(Bucket=BUCKET, Key=ADDED_MANIFEST_KEY, Body=render_added([added]).encode())
    fetched = fetch_added(models.s3, BUCKET, ADDED_MANIFEST_KEY)
    assert fetched == [added]
    results = models.run(entries=[*models.entries, *fetched], keep_marker=True)
    assert results["added:loras/brass.safetensors"].status == "downloaded" and models.marker.exists()
    assert added.path(models.models_dir).read_bytes() == blob(7, 5000)

    models.s3.put_object(Bucket=BUCKET, Key=ADDED_MANIFEST_KEY, Body=b'{"schema_version": 1, "models": [{}]}')
    with pytest.raises(ManifestError):
        fetch_added(models.s3, BUCKET, ADDED_MANIFEST_KEY)
    clash = Entry(**{**added.__dict__, "sha256": "1" * 64})
    with pytest.raises(ManifestError, match="different contents"):
        load_entries(ROOT / "mlserver" / "models.toml", None, [clash, added])


def test_the_api_hosts_sync_takes_the_background_removal_model_and_only_it() -> None:
    backend = in_folders(load_entries(ROOT / "mlserver" / "models.toml", None), ["rembg"])
    assert [(e.folder, e.file, e.s3_key, e.licence) for e in backend] == [
        ("rembg", "u2net.onnx", "models/rembg/u2net.onnx", "apache-2.0")
    ]
    with pytest.raises(ManifestError, match="no model of folder nothing"):
        in_folders(backend, ["nothing"])


def test_the_api_host_syncs_its_model_by_folder_and_cuts_out_with_it(
    models: Models, moto: MotoServer, tmp_path: Path
) -> None:
    """`--folder rembg`: the u2net stand-in from the bucket, checksummed, in place where REMBG_MODEL_PATH
    points; the style LoRAs and the other folders are left alone; the cut-out runs on the synced file."""
    from backend.cutout import process_product
    from tests.support.cutout import matte_model, product_photo

    onnx_bytes = matte_model()
    models.s3.put_object(Bucket=BUCKET, Key="models/rembg/u2net.onnx", Body=onnx_bytes)
    manifest = tmp_path / "models.toml"
    manifest.write_text(
        '[models.rembg_u2net]\nfolder = "rembg"\nfile = "u2net.onnx"\ns3_key = "models/rembg/u2net.onnx"\n'
        f'sha256 = "{hashlib.sha256(onnx_bytes).hexdigest()}"\nsize_bytes = {len(onnx_bytes)}\n'
        'licence = "apache-2.0"\n'
        + "".join(  # a ComfyUI model beside it, which the API host leaves alone
            f'[models.{e.name}]\nfolder = "{e.folder}"\nfile = "{e.file}"\ns3_key = "{e.s3_key}"\n'
            f'sha256 = "{e.sha256}"\nsize_bytes = {e.size_bytes}\n'
            for e in models.entries[:1]
        )
    )
    cmd = [sys.executable, "-m", "mlserver.model_sync", "--bucket", BUCKET, "--added-key", ""]
    cmd += ["--models-dir", str(models.models_dir), "--models-manifest", str(manifest), "--folder", "rembg"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "1 of 1 verified" in done.stdout
    synced = models.models_dir / "rembg" / "u2net.onnx"
    assert synced.read_bytes() == onnx_bytes
    assert sorted(p.name for p in models.models_dir.iterdir() if not p.name.startswith(".")) == ["rembg"]
    cut = process_product(product_photo(), max_pixels=10**7, max_side=2048, model_path=synced, threads=1)
    assert cut.method == "model" and 0.15 < cut.foreground < 0.25
    done = subprocess.run([*cmd[:-1], "nothing"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and "no model of folder nothing" in done.stderr
