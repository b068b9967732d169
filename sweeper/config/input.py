"""Step inputs: the files an execution needs, with their default sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sweeper.config.fields import Fields
from sweeper.config.loader import YamlMap
from sweeper.config.problems import Problems, quoted

#: Valohai limits input names to this many characters.
MAX_INPUT_NAME_LENGTH = 64
KEEP_DIRECTORIES = ("none", "full", "suffix")
DOWNLOAD_MODES = ("always", "on-demand")
EDGE_MERGE_MODES = ("replace", "append")
_KEYS = (
    "name",
    "default",
    "optional",
    "filename",
    "keep-directories",
    "download",
    "description",
    "edge-merge-mode",
)


@dataclass(frozen=True, kw_only=True)
class Input:
    """An input of a step: where its files come from by default and how they are laid out.

    ``keep_directories`` is ``"none"`` (YAML ``false``), ``"full"`` (YAML ``true``) or
    ``"suffix"``; ``download`` is ``"always"`` or ``"on-demand"``. ``edge_merge_mode`` is
    ``None`` unless the YAML sets it (``"replace"`` or ``"append"``).
    """

    name: str
    default: tuple[str, ...] = ()
    optional: bool = False
    filename: str | None = None
    keep_directories: str = "none"
    download: str = "always"
    description: str | None = None
    edge_merge_mode: str | None = None
    line: int | None = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> Input | None:
        """Parse one item of a step's ``inputs``; ``None`` if it has no usable name."""
        f = Fields.named(data, problems, "input", allowed=_KEYS)
        name = f.name()
        if name is not None and len(name) > MAX_INPUT_NAME_LENGTH:
            f.error("name", f"name is longer than {MAX_INPUT_NAME_LENGTH} characters")
            name = None
        default = f.string_list("default", allow_single=True)
        keep = f.raw("keep-directories")
        if keep is None or keep is False:
            keep_directories = "none"
        elif keep is True:
            keep_directories = "full"
        else:
            keep_directories = f.choice("keep-directories", KEEP_DIRECTORIES, "none")
        download = f.choice("download", DOWNLOAD_MODES, "always")
        edge_merge_mode = f.choice("edge-merge-mode", EDGE_MERGE_MODES, "") or None
        if "edge-merge-mode" in f:
            f.warning(
                "edge-merge-mode",
                "edge-merge-mode on an input is a sweeper extension: the Valohai platform "
                "refuses this key (set it on the pipeline node)",
            )
        optional = f.boolean("optional", False)
        filename = f.string("filename")
        description = f.string("description")
        if filename is not None and ("/" in filename or filename in ("", ".", "..")):
            f.warning("filename", f"filename {quoted(filename)} is not a plain file name")
        if name is None:
            return None
        return cls(
            name=name,
            default=default,
            optional=optional,
            filename=filename,
            keep_directories=keep_directories,
            download=download,
            description=description,
            edge_merge_mode=edge_merge_mode,
            line=f.line,
        )

    def serialize(self) -> dict[str, Any]:
        """This input as valohai.yaml data (defaults left out)."""
        data: dict[str, Any] = {"name": self.name}
        if self.default:
            data["default"] = self.default[0] if len(self.default) == 1 else list(self.default)
        if self.optional:
            data["optional"] = True
        if self.filename is not None:
            data["filename"] = self.filename
        if self.keep_directories != "none":
            data["keep-directories"] = self.keep_directories
        if self.download != "always":
            data["download"] = self.download
        if self.description is not None:
            data["description"] = self.description
        if self.edge_merge_mode is not None:
            data["edge-merge-mode"] = self.edge_merge_mode
        return data


__all__ = [
    "DOWNLOAD_MODES",
    "EDGE_MERGE_MODES",
    "Input",
    "KEEP_DIRECTORIES",
    "MAX_INPUT_NAME_LENGTH",
]
