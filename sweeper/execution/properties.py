"""Output properties: what a step says about its output files, and the dataset versions it makes.

A step (valohai-utils' ``valohai.output_properties()``, or by hand) writes
``outputs/valohai.metadata.jsonl``: one JSON object per line, ``{"file": "model.npz",
"metadata": {...}}``, ``file`` relative to the outputs folder. That file is read when the
execution ends, and is not an output itself. Each output's properties go into its entry
of the record (``properties``); a file named again merges its properties into the earlier
ones, as valohai-utils merges ``add`` calls.

The key ``valohai.dataset-versions`` lists the dataset versions a file belongs to: each
entry is ``"dataset://NAME/VERSION"`` or an object whose ``uri`` is one (its other keys
are kept with the properties, but only ``uri`` is acted on).

What cannot be used never costs the execution or its other outputs: a line that is not
such an object, a file that is not an output, properties larger than
:data:`MAX_PROPERTIES_BYTES` as JSON, or a dataset-version entry that is not a
``dataset://NAME/VERSION`` each give one warning (the log and the record's ``warnings``)
and are left out.

>>> props = OutputProperties.parse('{"file": "a.csv", "metadata": {"rows": 3}}\\nnot json\\n')
>>> props.by_file, len(props.warnings)
({'a.csv': {'rows': 3}}, 1)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from sweeper.store import LATEST, RecordStore, dataset_versions, split_version_uri, version_uri

#: The file valohai-utils writes in the outputs folder.
PROPERTIES_FILE = "valohai.metadata.jsonl"
#: The most one output's properties may take, as JSON text (Valohai's own limit is not
#: published; this keeps a record and an artifacts row small).
MAX_PROPERTIES_BYTES = 64 * 1024
#: The properties key that lists the dataset versions a file belongs to.
DATASET_VERSIONS_KEY = "valohai.dataset-versions"
#: Reading stops here: the file is for properties, not a place to hide gigabytes.
_MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class OutputProperties:
    """The properties of each output file (by its path under ``outputs/``), and the warnings."""

    by_file: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, outputs: Path) -> OutputProperties:
        """The properties file of an outputs folder (none: no properties, no warning)."""
        path = outputs / PROPERTIES_FILE
        if not path.is_file() or path.is_symlink():
            return cls()
        try:
            with path.open("rb") as handle:
                data = handle.read(_MAX_FILE_BYTES + 1)
        except OSError as exc:
            return cls(warnings=[f"{PROPERTIES_FILE}: cannot be read ({exc.strerror or exc})"])
        found = cls.parse(data[:_MAX_FILE_BYTES].decode("utf-8", errors="replace"))
        if len(data) > _MAX_FILE_BYTES:
            found.warnings.append(
                f"{PROPERTIES_FILE}: larger than {_MAX_FILE_BYTES >> 20} MiB; the rest is ignored"
            )
        return found

    @classmethod
    def parse(cls, text: str) -> OutputProperties:
        """The properties in the text of a properties file."""
        found = cls()
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                found.add_line(number, line)
        for file, properties in list(found.by_file.items()):
            size = len(json.dumps(properties, default=str).encode("utf-8"))
            if size > MAX_PROPERTIES_BYTES:
                del found.by_file[file]
                found.warnings.append(
                    f"{PROPERTIES_FILE}: the properties of {file} take {size} bytes, more than "
                    f"{MAX_PROPERTIES_BYTES}; they are not kept"
                )
        return found

    def add_line(self, number: int, line: str) -> None:
        """Take the properties of line ``number`` of the file (or a warning about it)."""
        where = f"{PROPERTIES_FILE} line {number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            self.warnings.append(f"{where}: not JSON ({exc.msg}); ignored")
            return
        if not isinstance(item, dict) or not isinstance(item.get("file"), str):
            self.warnings.append(f'{where}: not an object with a "file" name; ignored')
            return
        metadata = item.get("metadata")
        if not isinstance(metadata, dict):
            self.warnings.append(f'{where}: "metadata" of {item["file"]} is not an object; ignored')
            return
        file = _relative(item["file"])
        if file is None:
            self.warnings.append(f'{where}: "{item["file"]}" is not a path under outputs/; ignored')
            return
        self.by_file.setdefault(file, {}).update(metadata)

    def apply(self, outputs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """``outputs`` (the record's entries) with their ``properties``; a warning for each
        file that has properties but is not among them."""
        known = {str(item["path"]) for item in outputs}
        for file in self.by_file:
            if file not in known:
                self.warnings.append(
                    f"{PROPERTIES_FILE}: properties for {file}, which is not an output; ignored"
                )
        return [
            {**item, "properties": self.by_file[str(item["path"])]}
            if str(item["path"]) in self.by_file
            else dict(item)
            for item in outputs
        ]


def _relative(file: str) -> str | None:
    """The path under ``outputs/`` a properties line names, or None when it names none."""
    path = PurePosixPath(file.replace("\\", "/"))
    parts = [part for part in path.parts if part not in ("", ".")]
    if path.is_absolute() or not parts or ".." in parts:
        return None
    return "/".join(parts)


def version_requests(
    outputs: Sequence[Mapping[str, Any]],
) -> tuple[dict[str, list[Mapping[str, Any]]], list[str]]:
    """The dataset versions the outputs' properties ask for, by URI (each output once, in
    output order), and a warning for each entry that is not a ``dataset://NAME/VERSION``."""
    requests: dict[str, list[Mapping[str, Any]]] = {}
    warnings: list[str] = []
    for item in outputs:
        entries = (item.get("properties") or {}).get(DATASET_VERSIONS_KEY)
        if entries is None:
            continue
        if not isinstance(entries, list):
            entries = [entries]
        for entry in entries:
            uri = entry.get("uri") if isinstance(entry, Mapping) else entry
            if not isinstance(uri, str) or split_version_uri(uri) is None:
                warnings.append(
                    f"{item['path']}: {DATASET_VERSIONS_KEY} entry {json.dumps(entry, default=str)}"
                    " is not dataset://NAME/VERSION; ignored"
                )
                continue
            files = requests.setdefault(uri.strip(), [])
            if item not in files:
                files.append(item)
    return requests, warnings


@dataclass(frozen=True)
class RecordedOutputs:
    """What an ended execution's record keeps of its outputs: the outputs with their
    properties, the dataset versions it made, and the warnings."""

    outputs: tuple[dict[str, Any], ...]
    dataset_versions: tuple[dict[str, Any], ...] = ()
    warnings: tuple[str, ...] = ()


def record_outputs(
    store: RecordStore, outputs_dir: Path, outputs: Sequence[Mapping[str, Any]], *, complete: bool
) -> RecordedOutputs:
    """Read the properties file of ``outputs_dir`` into ``outputs`` (the collected files),
    and make the dataset versions they ask for.

    Only a complete execution makes versions: a failed one's files may be half written. A
    version that exists already is immutable: it is not changed, and a warning says so
    (name a new version instead). ``latest`` is no version name: it means the newest.
    """
    found = OutputProperties.read(outputs_dir)
    with_properties = found.apply(outputs)
    requests, warnings = version_requests(with_properties)
    warnings = found.warnings + warnings
    if requests and not complete:
        warnings += [f"{uri} not made: the execution did not complete" for uri in requests]
        requests = {}
    existing = {v.uri: v for v in dataset_versions(store)} if requests else {}
    made: list[dict[str, Any]] = []
    for uri, files in requests.items():
        name, version = split_version_uri(uri) or ("", "")
        if version == LATEST:
            warnings.append(f'{uri} not made: "{LATEST}" names the newest version, not one')
        elif uri in existing:
            warnings.append(
                f"{uri} not made: it exists (made by execution {existing[uri].made_by}) and a "
                "version never changes; name a new version"
            )
        else:
            made.append(_made(name, version, files))
    return RecordedOutputs(tuple(with_properties), tuple(made), tuple(warnings))


def _made(name: str, version: str, files: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "uri": version_uri(name, version),
        "name": name,
        "version": version,
        "files": [
            {"path": item["path"], "sha256": item["sha256"], "size": item["size"]} for item in files
        ],
    }


__all__ = [
    "DATASET_VERSIONS_KEY",
    "MAX_PROPERTIES_BYTES",
    "PROPERTIES_FILE",
    "OutputProperties",
    "RecordedOutputs",
    "record_outputs",
    "version_requests",
]
