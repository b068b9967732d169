"""An execution's work folder: made (ahead of time, for an actor), given its code, emptied
of its outputs into the store, removed.

A work folder holds ``repository/`` (the code snapshot, its files linked from a per-node
cache), ``inputs/``, ``outputs/`` and ``config/``; the runtime shows it to the step (see
:data:`sweeper.runtime.base.WORKDIR_FOLDERS`). :class:`WorkFolders` makes and removes them
for an :class:`~sweeper.execution.runner.Executor`; :func:`collect_outputs` stores what the
step left in ``outputs/``.
"""

from __future__ import annotations

import os
import queue
import shutil
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sweeper.errors import StoreError
from sweeper.execution.code import copy_tree_linked, extract_snapshot
from sweeper.execution.ids import new_execution_id
from sweeper.execution.properties import PROPERTIES_FILE
from sweeper.store import RecordStore


class SnapshotMissingError(StoreError):
    """The code snapshot an execution needs is no longer in the store.

    The store lost what sweeper put there: an infrastructure failure, not the step's.
    """


class _Housekeeper:
    """Runs an executor's housekeeping on a thread of its own, in order, off the executions' path."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def do(self, task: Callable[[], None]) -> None:
        """Run ``task`` soon, after those given before it."""
        self._queue.put(task)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name="sweeper-housekeeping", daemon=True
                )
                self._thread.start()

    def wait(self) -> None:
        """Return once every task given so far has run."""
        self._queue.join()

    def _work(self) -> None:
        while True:
            task = self._queue.get()
            try:
                task()
            except Exception:  # a folder not removed or not made ahead: only a lost shortcut
                pass
            finally:
                self._queue.task_done()


class WorkFolders:
    """The work folders of one executor, under ``scratch/work/``.

    ``scratch`` also holds the per-node cache of extracted code snapshots (``code/``). With
    ``in_background``, for a long-lived process that runs executions back to back (a
    sweep's actor), a thread removes a finished execution's folder and makes the next one's
    ahead (its subfolders and linked repository, renamed into place when the next execution
    has the same code): call :meth:`wait_removed` before the process goes away.
    """

    def __init__(self, store: RecordStore, scratch: Path, *, in_background: bool = False) -> None:
        self.store = store
        self.scratch = scratch
        self._housekeeper = _Housekeeper() if in_background else None
        self._spare_lock = threading.Lock()
        #: A work folder made ahead, empty but for its repository: (code archive, path).
        self._spare: tuple[str | None, Path] | None = None

    def path(self, execution_id: str) -> Path:
        """Where the work folder of ``execution_id`` is."""
        return self.scratch / "work" / execution_id

    def prepare(self, code_archive: str | None, workdir: Path) -> None:
        """Make ``workdir`` afresh with the code of ``code_archive`` in its repository.

        Raises :class:`SnapshotMissingError` when the store no longer has that code.
        """
        shutil.rmtree(workdir, ignore_errors=True)
        if not self._take_spare(code_archive, workdir):
            self._make(code_archive, workdir)

    def ended(self, code_archive: str | None, workdir: Path) -> None:
        """Remove an execution's work folder; in the background, also make the next one's."""
        if self._housekeeper is None:
            shutil.rmtree(workdir, ignore_errors=True)
            return
        self._housekeeper.do(lambda: shutil.rmtree(workdir, ignore_errors=True))
        self._housekeeper.do(lambda: self._make_spare(code_archive))

    def wait_removed(self) -> None:
        """Return once the work folders of the executions that have ended are removed.

        The folder made ahead for the next execution is removed too.
        """
        if self._housekeeper is not None:
            self._housekeeper.wait()
            with self._spare_lock:
                spare, self._spare = self._spare, None
            if spare is not None:
                shutil.rmtree(spare[1], ignore_errors=True)

    def _make_spare(self, code_archive: str | None) -> None:
        with self._spare_lock:
            if self._spare is not None and self._spare[0] == code_archive:
                return
            old, self._spare = self._spare, None
        if old is not None:
            shutil.rmtree(old[1], ignore_errors=True)
        path = self.path(f".next-{new_execution_id()}")
        try:
            self._make(code_archive, path)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        with self._spare_lock:
            self._spare = (code_archive, path)

    def _take_spare(self, code_archive: str | None, workdir: Path) -> bool:
        """Rename the folder made ahead to ``workdir``; False when there is none for this code."""
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is None:
            return False
        if spare[0] == code_archive:
            try:
                os.rename(spare[1], workdir)
                return True
            except OSError:
                pass
        shutil.rmtree(spare[1], ignore_errors=True)
        return False

    def _make(self, code_archive: str | None, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        for sub in ("inputs", "outputs", "config"):
            (workdir / sub).mkdir(exist_ok=True)
        self._repository(code_archive, workdir / "repository")

    def _repository(self, code_archive: str | None, dest: Path) -> None:
        if code_archive is None:
            dest.mkdir(parents=True, exist_ok=True)
            return
        extracted = self.scratch / "code" / code_archive
        if not extracted.exists():
            archive = self.scratch / "code" / f"{code_archive}.tar"
            if not archive.exists():
                archive.parent.mkdir(parents=True, exist_ok=True)
                part = archive.with_name(f".{archive.name}.{os.getpid()}.{threading.get_ident()}")
                if not self.store.has_blob(code_archive):
                    raise SnapshotMissingError(
                        f"the code snapshot {code_archive[:12]} is no longer in the store "
                        f"{self.store.location}: the execution cannot be reproduced"
                    )
                self.store.fetch_blob(code_archive, part)
                os.replace(part, archive)
            extract_snapshot(archive, extracted)
        copy_tree_linked(extracted, dest)


def collect_outputs(
    store: RecordStore, execution_id: str, outputs: Path
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The outputs folder's regular files, stored; and what was skipped, with why.

    The output properties file (:data:`~sweeper.execution.properties.PROPERTIES_FILE`) is
    not an output: it is read into the outputs' ``properties`` instead.
    """
    collected: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    root = outputs.resolve()
    for dirpath, dirnames, filenames in os.walk(outputs):
        dirnames.sort()
        # os.walk does not enter linked folders; say so rather than drop them unseen.
        for name in [d for d in dirnames if (Path(dirpath) / d).is_symlink()]:
            path = Path(dirpath) / name
            relative = path.relative_to(outputs).as_posix()
            skipped.append({"path": relative, "reason": _skip_reason(path, root) or "a link"})
        for name in sorted(filenames):
            path = Path(dirpath) / name
            relative = path.relative_to(outputs).as_posix()
            if relative == PROPERTIES_FILE:
                continue
            why = _skip_reason(path, root)
            if why is not None:
                skipped.append({"path": relative, "reason": why})
                continue
            sha256, size = store.put_file(path.resolve())
            collected.append(
                {
                    "name": relative,
                    "path": relative,
                    "uri": f"datum://{sha256}",
                    "sha256": sha256,
                    "size": size,
                    "producer_execution_id": execution_id,
                }
            )
    skipped.sort(key=lambda item: item["path"])
    return collected, skipped


def _skip_reason(path: Path, root: Path) -> str | None:
    """Why an entry of the outputs folder is not stored, or None for a file to store."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop, before Python 3.13
        return "a link that loops"
    if path.is_symlink():
        if not real.is_relative_to(root):
            return "it points outside the outputs folder"
        if not real.exists():
            return "a broken link"
    try:
        mode = real.stat().st_mode
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a link to a folder (links are not followed)"
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device"}
    kind = next((name for test, name in kinds.items() if test(mode)), "a special file")
    return f"{kind}, not a regular file"
