"""What a member of a distributed task reads: ``/valohai/config/distributed.json`` (and ``.yaml``).

Valohai starts the ``execution-count`` executions of a ``type: distributed`` task together and
gives each the same list of members, with its own id in ``config.member_id``; valohai-utils'
``valohai.distributed`` reads that file and ranks the members by id (``"0"`` is the master).
The shape, as Valohai writes it::

    {"config": {"group_name": "...", "member_id": "0", "required_count": 2},
     "members": [{"member_id": "0", "announce_time": "...", "identity": "...",
                  "job_id": "<execution id>",
                  "network": {"local_ips": ["10.0.0.5"], "public_ips": ["10.0.0.5"],
                              "exposed_ports": {"40123": "40123"}}}, ...],
     "self": {... this member's entry ...}}

Pure data: the driver learns each member's node address and reserved port before any member
starts (:mod:`sweeper.cluster.distributed`) and builds one file per member here.

>>> member = MemberAddress(member_id="0", job_id="e1", identity="node-a",
...                        local_ips=("10.0.0.5",), ports=(40123,), announce_time="t")
>>> config = GroupConfig(group_name="g1", members=(member,)).member_config("0")
>>> config["config"], config["members"][0]["network"]["exposed_ports"]
({'group_name': 'g1', 'member_id': '0', 'required_count': 1}, {'40123': '40123'})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

#: The files a member finds in its config folder.
CONFIG_JSON = "distributed.json"
CONFIG_YAML = "distributed.yaml"


@dataclass(frozen=True, kw_only=True)
class MemberAddress:
    """One member as the others see it: its id, its execution and where it can be reached.

    ``local_ips`` is the address of the member's node on the cluster's network (what Ray
    calls the node IP); sweeper's nodes have no separate public address, so ``public_ips``
    is the same unless given. ``ports`` were reserved for the member on its node; each is
    exposed under its own number (the member runs on its node's network).
    """

    member_id: str
    job_id: str
    identity: str
    local_ips: tuple[str, ...]
    ports: tuple[int, ...] = ()
    public_ips: tuple[str, ...] | None = None
    announce_time: str

    def to_dict(self) -> dict[str, Any]:
        """The member's entry of ``members[]``, keys as valohai-utils reads them."""
        return {
            "announce_time": self.announce_time,
            "identity": self.identity,
            "job_id": self.job_id,
            "member_id": self.member_id,
            "network": {
                "exposed_ports": {str(port): str(port) for port in self.ports},
                "local_ips": list(self.local_ips),
                "public_ips": list(
                    self.public_ips if self.public_ips is not None else self.local_ips
                ),
            },
        }


@dataclass(frozen=True, kw_only=True)
class GroupConfig:
    """A distributed group: its name and every member, in member-id order."""

    group_name: str
    members: tuple[MemberAddress, ...]

    def member_config(self, member_id: str) -> dict[str, Any]:
        """The ``distributed.json`` of member ``member_id``: the group, every member, itself."""
        me = next((m for m in self.members if m.member_id == member_id), None)
        if me is None:
            raise ValueError(f"group {self.group_name} has no member {member_id!r}")
        return {
            "config": {
                "group_name": self.group_name,
                "member_id": member_id,
                "required_count": len(self.members),
            },
            "members": [m.to_dict() for m in self.members],
            "self": me.to_dict(),
        }


def group_of(config: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """(group name, member id) of a member's ``distributed.json``; None for no config."""
    if not config:
        return None
    section = config.get("config") or {}
    return str(section.get("group_name")), str(section.get("member_id"))


def write_distributed_config(config_dir: Path, config: Mapping[str, Any]) -> None:
    """Write a member's ``distributed.json`` and ``distributed.yaml`` into ``config_dir``."""
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / CONFIG_JSON).write_text(json.dumps(dict(config), indent=2))
    (config_dir / CONFIG_YAML).write_text(yaml.safe_dump(dict(config), sort_keys=False))
