"""The code version of a project and an immutable snapshot of its files.

The version is the git commit plus a hash of uncommitted changes (``git:<commit>`` or
``git:<commit>+dirty.<hash>``), or a content hash of the project files (``files:<hash>``)
outside git. The snapshot is a tar archive stored by content in the store, so any node can
rebuild the exact repository an execution ran with, and ``sweep rerun`` can check it is
still there.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sweeper.errors import SweeperError
from sweeper.execution.spec import MASK, is_secret_name

#: Folders never part of a project's code: version control, stores, caches, environments.
IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".sweeper",
        "__pycache__",
        ".venv",
        "venv",
        "node_modules",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".ipynb_checkpoints",
    }
)


@dataclass(frozen=True)
class CodeSnapshot:
    """A project's files at one version, archived as one content-addressed blob."""

    version: str
    archive_sha256: str
    files: int


def _git(project: Path, *args: str) -> bytes | None:
    try:
        proc = subprocess.run(
            ["git", *args], cwd=project, capture_output=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def project_files(project: Path) -> list[str]:
    """Relative paths of the project's files, sorted: git's view when inside git."""
    listed = _git(project, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is not None:
        names = [n for n in listed.decode("utf-8", "surrogateescape").split("\0") if n]
        files = [n for n in names if not (set(Path(n).parts) & IGNORED_DIRS)]
        return sorted(n for n in files if (project / n).is_file())
    found = []
    for root, dirs, names in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in IGNORED_DIRS)
        for name in names:
            path = os.path.join(root, name)
            if os.path.isfile(path):  # not a socket or a FIFO (a Ray folder, a pipe): no code
                found.append(os.path.relpath(path, project))
    return sorted(found)


def _content_hash(project: Path, files: list[str]) -> str:
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode("utf-8", "surrogateescape") + b"\0")
        with open(project / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def code_version(project: Path, files: list[str] | None = None) -> str:
    """The project's code version string (see the module docstring)."""
    files = project_files(project) if files is None else files
    commit = _git(project, "rev-parse", "HEAD")
    if commit is None:
        return "files:" + _content_hash(project, files)[:16]
    head = commit.decode().strip()
    diff = _git(project, "diff", "HEAD", "--binary") or b""
    untracked = _git(project, "ls-files", "-z", "--others", "--exclude-standard") or b""
    if not diff and not untracked:
        return f"git:{head}"
    names = sorted(n for n in untracked.decode("utf-8", "surrogateescape").split("\0") if n)
    names = [n for n in names if n in set(files)]
    digest = hashlib.sha256(diff + _content_hash(project, names).encode()).hexdigest()
    return f"git:{head}+dirty.{digest[:12]}"


#: The configuration files whose secret values the snapshot masks.
CONFIG_NAMES = frozenset({"valohai.yaml", "valohai.yml"})
#: Larger configuration files are archived as they are (the loader refuses them anyway).
MAX_CONFIG_BYTES = 5_000_000


def _secret_defaults(data: Any) -> set[str]:
    """Default values of secret environment variables anywhere in a parsed valohai.yaml.

    Iterative, and visiting each node once: aliases may make the data recursive, or share
    nodes exponentially (a YAML bomb).
    """
    found: set[str] = set()
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        node, inside_variables = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            if inside_variables and "default" in node:
                name = str(node.get("name", ""))
                value = node.get("default")
                if (node.get("secret") is True or is_secret_name(name)) and value is not None:
                    if len(str(value)) >= 4:
                        found.add(str(value))
            for key, value in node.items():
                stack.append((value, key in ("environment-variables", "environment")))
        elif isinstance(node, list):
            stack.extend((item, inside_variables) for item in node)
    return found


def mask_config_secrets(content: bytes) -> bytes:
    """A valohai.yaml's bytes with the defaults of secret variables replaced by ``****``.

    Records and logs mask these values; the code snapshot in the store must not keep them
    either. The step gets the real value from its spec, never from the snapshot's file.
    """
    if len(content) > MAX_CONFIG_BYTES:
        return content  # never a valid valohai.yaml: the loader refuses it
    try:
        data = yaml.safe_load(content)
    except (yaml.YAMLError, ValueError, RecursionError):
        return content
    for secret in sorted(_secret_defaults(data), key=len, reverse=True):
        content = content.replace(secret.encode(), MASK.encode())
    return content


def archive_project(project: Path, files: list[str]) -> bytes:
    """A reproducible tar archive of the files (fixed mtimes and owners).

    Secret variable defaults in valohai.yaml are masked (see :func:`mask_config_secrets`).
    """
    buffer = io.BytesIO()
    root = project.resolve()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in files:
            info = tar.gettarinfo(str(project / name), arcname=name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if info.issym() or info.islnk():
                # A link is kept (relative) only when it points inside the project: one
                # pointing outside would not resolve on another node, and must not pull
                # files from elsewhere into the store.
                target = (project / name).resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    continue
                info.type = tarfile.SYMTYPE
                info.linkname = os.path.relpath(target, (root / name).parent)
                tar.addfile(info)
                continue
            if Path(name).name in CONFIG_NAMES and info.isfile():
                content = mask_config_secrets((project / name).read_bytes())
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
                continue
            with open(project / name, "rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


def extract_snapshot(archive: Path, dest: Path) -> None:
    """Unpack a snapshot archive into ``dest`` (created atomically), refusing unsafe members."""
    if dest.exists():
        return
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SweeperError(f"cannot unpack the code snapshot {archive.name}: {exc}") from None
    try:
        os.rename(tmp, dest)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process extracted it first
        if not dest.exists():
            raise


def copy_tree_linked(src: Path, dest: Path) -> None:
    """Copy a snapshot into an execution's repository folder, hardlinking where possible."""

    def link_or_copy(source: str, target: str) -> None:
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)

    shutil.copytree(src, dest, copy_function=link_or_copy, dirs_exist_ok=True)
