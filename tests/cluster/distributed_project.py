"""A project whose distributed task's members find each other through distributed.json alone.

Member ``"0"`` (rank 0) listens on its own address and reserved port; every other member
connects there; each sends ``hello from member N`` and prints what it got as a metric line.
``crash_member`` names a member that exits 3 at once instead (the others then wait on).
"""

from __future__ import annotations

from pathlib import Path

RENDEZVOUS = """
import json, os, socket, sys, time

config = json.load(open(os.path.join(os.environ["VH_CONFIG_DIR"], "distributed.json")))
me = config["config"]["member_id"]
members = sorted(config["members"], key=lambda m: int(m["member_id"]))
master = members[0]
host = master["network"]["local_ips"][0]
port = int(next(iter(master["network"]["exposed_ports"])))
if me == sys.argv[1]:
    print(f"member {me} fails on purpose", flush=True)
    sys.exit(3)
if me == master["member_id"]:
    server = socket.create_server((host, port))
    got = []
    for _ in members[1:]:
        conn, _addr = server.accept()
        with conn:
            got.append(conn.recv(1024).decode())
            conn.sendall(f"hello from member {me}".encode())
else:
    for _ in range(3000):
        try:
            conn = socket.create_connection((host, port), timeout=5)
            break
        except OSError:
            time.sleep(0.1)
    with conn:
        conn.sendall(f"hello from member {me}".encode())
        got = [conn.recv(1024).decode()]
print(json.dumps({"member": int(me), "received": " | ".join(sorted(got))}), flush=True)
"""

YAML = """
- step:
    name: rendezvous
    image: {image}
    command: python{python} rendezvous.py {{parameter-value:crash_member}}
    parameters:
      - name: crash_member
        type: integer
        default: -1
    resources:
      cpu:
        min: {cpus}
- step:
    name: report
    image: {image}
    command: echo reported {{parameter-value:member}}
    parameters:
      - name: member
        type: integer
        default: -1
- task:
    name: pair
    step: rendezvous
    type: distributed
    execution-count: {count}
    parameters:
      - name: crash_member
        style: single
        rules: {{value: -1}}
- pipeline:
    name: group-then-report
    nodes:
      - name: members
        type: task
        task: pair
      - name: report
        type: execution
        step: report
    edges:
      - [members.metadata.member, report.parameter.member]
"""


def write_project(
    root: Path,
    *,
    count: int = 2,
    cpus: int = 1,
    image: str = "python:3.11",
    python: str = "3",
) -> Path:
    """The project at ``root``: step ``rendezvous``, task ``pair``, pipeline ``group-then-report``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "rendezvous.py").write_text(RENDEZVOUS)
    (root / "valohai.yaml").write_text(
        YAML.format(count=count, cpus=cpus, image=image, python=python)
    )
    return root
