"""Resource requests of a step: CPUs, memory (MB) and devices such as GPUs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sweeper.config.fields import Fields, is_number
from sweeper.config.loader import YamlMap
from sweeper.config.problems import Problems, quoted

GPU_DEVICE = "nvidia.com/gpu"
_RANGE_KEYS = ("min", "max")


def _empty_devices() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class Resources:
    """What a step asks for: ``cpu_min``/``cpu_max`` (vCPUs), ``memory_min``/``memory_max`` (MB),
    and ``devices`` by name (``{"nvidia.com/gpu": 1}``)."""

    cpu_min: float | None = None
    cpu_max: float | None = None
    memory_min: int | None = None
    memory_max: int | None = None
    devices: Mapping[str, float] = field(default_factory=_empty_devices)

    @property
    def gpus(self) -> float:
        """The number of NVIDIA GPUs requested (``nvidia.com/gpu``), 0 if none."""
        return float(self.devices.get(GPU_DEVICE, 0))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Resources):
            return NotImplemented
        return (
            self.cpu_min,
            self.cpu_max,
            self.memory_min,
            self.memory_max,
            dict(self.devices),
        ) == (
            other.cpu_min,
            other.cpu_max,
            other.memory_min,
            other.memory_max,
            dict(other.devices),
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.cpu_min,
                self.cpu_max,
                self.memory_min,
                self.memory_max,
                tuple(sorted(self.devices.items())),
            )
        )

    @classmethod
    def parse(cls, data: YamlMap, problems: Problems) -> Resources:
        """Parse a step's ``resources`` mapping."""
        f = Fields(data, problems, prefix="resources: ", allowed=("cpu", "memory", "devices"))
        cpu_min, cpu_max = _range(f, "cpu", problems)
        memory_min, memory_max = _range(f, "memory", problems)
        for key, value in (("min", memory_min), ("max", memory_max)):
            if value is not None and not float(value).is_integer():
                f.warning("memory", f"memory {key} {value} is rounded up to {math.ceil(value)} MB")
        devices: dict[str, float] = {}
        raw_devices = f.mapping("devices")
        for name, count in (raw_devices or {}).items():
            assert raw_devices is not None
            line = raw_devices.line_of(name)
            if not is_number(count) or count < 1:
                problems.error(
                    line, f"resources: device {quoted(name)} count must be a number of at least 1"
                )
                continue
            devices[name] = count
        return cls(
            cpu_min=None if cpu_min is None else float(cpu_min),
            cpu_max=None if cpu_max is None else float(cpu_max),
            memory_min=None if memory_min is None else math.ceil(memory_min),
            memory_max=None if memory_max is None else math.ceil(memory_max),
            devices=MappingProxyType(devices),
        )

    def serialize(self) -> dict[str, Any]:
        """These resources as valohai.yaml data (empty when nothing is requested)."""
        data: dict[str, Any] = {}
        for key, low, high in (
            ("cpu", self.cpu_min, self.cpu_max),
            ("memory", self.memory_min, self.memory_max),
        ):
            part = {k: _tidy(v) for k, v in (("min", low), ("max", high)) if v is not None}
            if part:
                data[key] = part
        if self.devices:
            data["devices"] = {name: _tidy(count) for name, count in self.devices.items()}
        return data


def _tidy(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _range(f: Fields, key: str, problems: Problems) -> tuple[Any, Any]:
    section = f.mapping(key)
    if section is None:
        return None, None
    sub = Fields(section, problems, prefix=f"resources: {key}: ", allowed=_RANGE_KEYS)
    low, high = sub.number("min"), sub.number("max")
    # Valohai takes any numbers; ranges no machine can meet block a run instead.
    blocking = problems.blocking()
    for name, value in (("min", low), ("max", high)):
        if value is not None and value < 0:
            blocking.error(sub.line_of(name), f"{sub.prefix}{name} must not be negative")
    if low is not None and high is not None and low > high:
        blocking.error(sub.line_of("min"), f"{sub.prefix}min ({low}) is greater than max ({high})")
    return low, high


__all__ = ["GPU_DEVICE", "Resources"]
