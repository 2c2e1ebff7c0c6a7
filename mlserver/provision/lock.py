"""comfyui.lock: what the ML server runs (ComfyUI, custom nodes, PyTorch), parsed and checked.

    python -m mlserver.provision.lock --check     # exit 1 with the problems if the lock is malformed
    python -m mlserver.provision.lock --repos     # "name repo commit requirements" per line (install.sh)
    python -m mlserver.provision.lock --torch     # the index URL, then the pinned packages

install.sh reads the lines this prints rather than parsing TOML in bash.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCK_PATH = Path(__file__).resolve().parent / "comfyui.lock"
COMMIT = re.compile(r"^[0-9a-f]{40}$")
REPO = re.compile(r"^https://github\.com/[\w.-]+/[\w.-]+$")
NAME = re.compile(r"^[\w.-]+$")
PINNED = re.compile(r"^[\w.-]+==[\w.+-]+$")


class LockError(ValueError):
    """The lock is malformed; the message lists every problem."""


@dataclass(frozen=True)
class Repo:
    name: str
    repo: str
    commit: str
    requirements: str


@dataclass(frozen=True)
class Lock:
    comfyui: Repo
    version: str
    custom_nodes: tuple[Repo, ...]
    torch_index_url: str
    torch_packages: tuple[str, ...]

    @property
    def repos(self) -> tuple[Repo, ...]:
        return (self.comfyui, *self.custom_nodes)


def _repo(table: dict[str, Any], where: str, problems: list[str]) -> Repo:
    repo = Repo(
        str(table.get("name", "ComfyUI")),
        str(table.get("repo", "")),
        str(table.get("commit", "")),
        str(table.get("requirements", "")),
    )
    if not NAME.match(repo.name):
        problems.append(f"{where}: name {repo.name!r} is not a folder name")
    if not REPO.match(repo.repo):
        problems.append(f"{where}: repo {repo.repo!r} is not an https://github.com/<owner>/<name> URL")
    if not COMMIT.match(repo.commit):
        problems.append(f"{where}: commit {repo.commit!r} is not a full 40-hex commit id")
    if repo.requirements and (repo.requirements.startswith("/") or ".." in repo.requirements):
        problems.append(f"{where}: requirements {repo.requirements!r} must be a path inside the repo")
    return repo


def parse_lock(text: str) -> Lock:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"not TOML: {exc}") from exc
    problems: list[str] = []
    comfyui = _repo(data.get("comfyui", {}), "[comfyui]", problems)
    nodes = tuple(
        _repo(t, f"custom node {i + 1}", problems) for i, t in enumerate(data.get("custom_nodes", []))
    )
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        problems.append("custom node names must be unique")
    torch = data.get("torch", {})
    packages = tuple(str(p) for p in torch.get("packages", []))
    if not packages or not all(PINNED.match(p) for p in packages):
        problems.append("[torch] packages must each be pinned with ==")
    if not str(torch.get("index_url", "")).startswith("https://"):
        problems.append("[torch] index_url must be an https URL")
    if problems:
        raise LockError("; ".join(problems))
    return Lock(comfyui, str(data["comfyui"].get("version", "")), nodes, str(torch["index_url"]), packages)


def load_lock(path: Path = LOCK_PATH) -> Lock:
    return parse_lock(path.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m mlserver.provision.lock", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--lock", type=Path, default=LOCK_PATH)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--check", action="store_true")
    what.add_argument("--repos", action="store_true")
    what.add_argument("--torch", action="store_true")
    args = p.parse_args(argv)
    try:
        lock = load_lock(args.lock)
    except (OSError, LockError) as exc:
        sys.stderr.write(f"{args.lock}: {exc}\n")
        return 1
    if args.repos:
        for r in lock.repos:
            sys.stdout.write(f"{r.name} {r.repo} {r.commit} {r.requirements or '-'}\n")
    elif args.torch:
        sys.stdout.write("\n".join([lock.torch_index_url, *lock.torch_packages]) + "\n")
    else:
        sys.stdout.write(f"ComfyUI {lock.version} and {len(lock.custom_nodes)} custom nodes, all pinned\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
