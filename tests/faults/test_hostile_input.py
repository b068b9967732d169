"""Hostile input through the real ``sweep`` command: one clear ``sweep: error: ...``, no traceback.

Configuration bombs and garbage, wrong types, control characters; steps printing hostile
metrics and output; parameter values made to break a shell; inputs and outputs that try
to leave their folders.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sweeper.config.step import _KEYS as STEP_KEYS
from sweeper.store import Store
from tests.conftest import run_main

pytestmark = [pytest.mark.faults]

BASE_STEP = """- step:
    name: tiny
    image: sweeper-test/python:latest
    command: python3 ./tiny.py
"""

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def sweep(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_main(list(args), capsys)


def clean_error(result: tuple[int, str, str], *expected: str) -> str:
    code, _out, err = result
    assert code != 0, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("sweep: error: "), err
    assert len(err) < 4000, f"the message is {len(err)} characters long"
    for text in expected:
        assert text in err, err
    return err


# --------------------------------------------------------------------------- configuration


def write(root: Path, content: bytes | str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "valohai.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


CONFIGS = {
    "alias bomb": BOMB,
    "recursive alias": "- &a [*a]\n",
    "deep nesting": "[" * 20000 + "]" * 20000,
    "non-utf8": b"- step:\n    name: caf\xe9\n    image: i\n    command: c\n",
    "binary": bytes(range(256)) * 64,
    "not a list": "step: {name: tiny}\n",
    "empty": "",
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_hostile_configuration(case: str, tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "p", CONFIGS[case])
    for command in (["run", "tiny", "--runtime", "local"], ["steps"], ["tiny", "--trials", "1"]):
        err = clean_error(sweep(capsys, *command, "-f", str(path)))
        assert "\x1b" not in err and "\x07" not in err


#: Step names with control characters: valohai-yaml 0.61 accepts them (its schema has no
#: pattern for step names), so the file is not refused as a whole; sweeper reports the name,
#: escaped, at its line and will not run such a step (the name would reach the terminal, the
#: store and the command line).
HOSTILE_NAMES = {
    "control characters in a name": "ti\x1b[2Jny\x07",
    "newline in a name": "tiny\nrm -rf /",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_step_name_is_reported_escaped_and_never_run(
    case: str, tmp_path: Path, capsys
) -> None:
    name = HOSTILE_NAMES[case]
    escaped = json.dumps(name)  # how messages quote it: \u001b, \n
    path = write(tmp_path / "p", BASE_STEP.replace("name: tiny", f"name: {escaped}"))
    config = ["-f", str(path)]
    raw = ("\x1b", "\x07", "\nrm -rf /")
    # lint points at the name's line, escaped; valohai-yaml accepts the file, so a warning
    code, out, err = sweep(capsys, "lint", *config)
    assert "Traceback" not in err
    assert f"valohai.yaml:2: warning: step {escaped}" in out + err, out + err
    assert "contains control characters" in out + err and code == 0
    assert not any(text in out + err for text in raw), out + err
    # listing steps never prints the raw name
    code, out, err = sweep(capsys, "steps", *config)
    assert code == 0 and "Traceback" not in err, err
    assert not any(text in out + err for text in raw), out + err
    # running it, by its full name or by a prefix, as a run or a sweep, is refused clearly
    err = clean_error(
        sweep(capsys, "run", name, "--runtime", "local", *config),
        f"{path}:2: warning: step {escaped}",
        "contains control characters",
    )
    assert not any(text in err for text in raw), err
    for command in (["run", "tiny", "--runtime", "local"], ["tiny", "--trials", "1"]):
        err = clean_error(sweep(capsys, *command, *config), 'unknown step "tiny"')
        assert not any(text in err for text in raw), err
    # nothing ran, nothing was recorded under the name
    store = tmp_path / "p" / ".sweeper"
    assert not store.exists() or Store.open(store).read_dataset("executions").num_rows == 0


def test_a_50_mb_configuration_is_refused_as_too_large(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "p", BASE_STEP + "# " + "x" * (50 << 20) + "\n")
    clean_error(sweep(capsys, "run", "tiny", "-f", str(path)), "too large")


WRONG_VALUES = ["[1, 2]", "{a: 1}", "12.5", "true", '"text"']
#: The step fields whose value is free text, as valohai-yaml types them (a string, or a list
#: of strings for the command): a plain string is valid there and refused everywhere else.
#: time-limit and no-output-timeout take a string too, but a duration; runtime-config-preset
#: an id: "text" is refused there, by valohai-yaml as by sweeper.
TEXT_FIELDS = {
    "image",
    "command",
    "environment",
    "source-path",
    "description",
    "icon",
    "category",
    "upload-store",
    "stop-condition",
}


def step_with(key: str, value: str) -> str:
    fields = {"name": "tiny", "image": "sweeper-test/python:latest", "command": "python3 ./t.py"}
    fields[key] = value
    return "- step:\n" + "".join(f"    {k}: {v}\n" for k, v in fields.items())


@pytest.mark.parametrize("key", [k for k in STEP_KEYS if k != "name"])
def test_wrong_types_in_every_step_field(key: str, tmp_path: Path, capsys) -> None:
    for index, value in enumerate(WRONG_VALUES):
        path = write(tmp_path / f"p{index}", step_with(key, value))
        code, out, err = sweep(
            capsys, "run", "tiny", "--runtime", "local", "--dry-run", "-f", str(path)
        )
        assert "Traceback" not in err
        if value == '"text"' and key in TEXT_FIELDS:
            assert code == 0, err  # a plain string is a valid value of the text fields
            continue
        # the message names the field (mounts: "mount must be ...")
        clean_error((code, out, err), key.split("-")[0].rstrip("s"))


def test_the_text_fields_are_those_valohai_yaml_types_as_strings() -> None:
    from valohai_yaml.schema_data import SCHEMATA

    properties = SCHEMATA["https://valohai.com/schemas/step"]["properties"]

    def takes_a_string(schema: dict) -> bool:
        return schema.get("type") == "string" or any(
            takes_a_string(option) for option in schema.get("oneOf", ())
        )

    assert TEXT_FIELDS <= set(STEP_KEYS)
    assert {key for key in TEXT_FIELDS if not takes_a_string(properties[key])} == set()
    # the other fields that take a string take one of a form: a duration, an id
    formed = {key for key in properties if takes_a_string(properties[key])} - TEXT_FIELDS
    assert formed == {"name", "time-limit", "no-output-timeout", "runtime-config-preset"}


PARAMETER_FIELDS = ["type", "min", "max", "default", "choices", "optional", "pass-as", "multiple"]
HOSTILE_VALUES = [*WRONG_VALUES, "-1e999", "null"]  # YAML reads -1e999 as a string

#: (field, value) pairs that make a valid float parameter. Of the null values only
#: ``default: null`` is valid: valohai-yaml's schema refuses null for every other typed key.
VALID_IN_PARAMETER = {
    ("default", "null"),
    ("min", "12.5"),
    ("max", "12.5"),
    ("default", "12.5"),
    ("optional", "true"),
    ("pass-as", '"text"'),
    ("pass-as", "-1e999"),
}
#: Valohai accepts a default of the wrong type or outside the choices; sweeper renders it,
#: and lint warns with these words.
WARNED_IN_PARAMETER = {
    ("default", "true"): "default True is not a number",
    ("default", '"text"'): 'default "text" is not a number',
    ("default", "-1e999"): 'default "-1e999" is not a finite number',
    ("choices", "[1, 2]"): "default 0.1 is not one of the choices: 1, 2",
}


def parameter_with(field: str, value: str) -> str:
    """A step whose float parameter ``lr`` has ``field: value`` and is otherwise valid."""
    fields = {"name": "lr", "type": "float", "default": "0.1", field: value}
    lines = "".join(f"        {key}: {text}\n" for key, text in fields.items())
    return BASE_STEP + "    parameters:\n      -" + lines[7:]


@pytest.mark.parametrize("field", PARAMETER_FIELDS)
def test_wrong_types_in_parameter_fields(field: str, tmp_path: Path, capsys) -> None:
    for index, value in enumerate(HOSTILE_VALUES):
        path = write(tmp_path / f"p{index}", parameter_with(field, value))
        config = ["-f", str(path)]
        result = sweep(capsys, "run", "tiny", "--dry-run", *config)
        if (field, value) in VALID_IN_PARAMETER:
            assert result[0] == 0, (value, result)
            continue
        if (field, value) in WARNED_IN_PARAMETER:
            assert result[0] == 0, (value, result)
            code, out, err = sweep(capsys, "lint", *config)
            warning = f'warning: parameter "lr": {WARNED_IN_PARAMETER[field, value]}'
            assert code == 0 and warning in out + err, out + err
            continue
        # refused with one message that names the field, by `run` and by a sweep alike
        expected = [f'parameter "lr": {field}']
        if value == "null":  # as valohai-yaml refuses it, at the key's line
            line = parameter_with(field, value).splitlines().index(f"        {field}: null") + 1
            expected += [f"{path}:{line}: error: ", f"{field} has no value (null)"]
        clean_error(result, *expected)
        clean_error(sweep(capsys, "tiny", "--trials", "1", *config), *expected)


@pytest.mark.parametrize(
    "value",
    ["abc", "nan", "inf", "1e999", "", "0x10", "1" * 5000, "\x00", "1;rm -rf /"],
)
def test_wrong_parameter_values_on_the_command_line(value: str, tmp_path: Path, capsys) -> None:
    text = BASE_STEP + (
        "    parameters:\n      - {name: n, type: integer, min: 0, max: 10, default: 1}\n"
    )
    path = write(tmp_path / "p", text)
    clean_error(sweep(capsys, "run", "tiny", "--dry-run", "-p", f"n={value}", "-f", str(path)), "n")


# --------------------------------------------------------------------------- hostile steps

HOSTILE_STEPS = """
- step:
    name: metrics
    image: sweeper-test/python:latest
    command: python3 ./metrics.py
- step:
    name: garbage
    image: sweeper-test/python:latest
    command: python3 ./garbage.py
- step:
    name: echo
    image: sweeper-test/python:latest
    command: python3 ./echo.py {parameters}
    parameters:
      - name: text
        type: string
        default: plain
- step:
    name: outputs
    image: sweeper-test/python:latest
    command: python3 ./outputs.py
- step:
    name: reader
    image: sweeper-test/python:latest
    command: python3 ./reader.py
    inputs:
      - name: data
        optional: true
      - name: renamed
        optional: true
        filename: ../../escaped.txt
- step:
    name: climber
    image: sweeper-test/python:latest
    command: python3 ./reader.py
    inputs:
      - name: data
        default: ../outside.txt
- step:
    name: rooted
    image: sweeper-test/python:latest
    command: python3 ./reader.py
    inputs:
      - name: data
        default: /etc/hostname
"""

METRICS_PY = r"""
import json, sys
print('{"loss": 1.5, "acc": NaN, "up": Infinity, "down": -Infinity}', flush=True)
print("{" + '"big": "' + "x" * (2 << 20) + '"}', flush=True)
print('{"nested": ' + "[" * 200000 + "]" * 200000 + "}", flush=True)
print('{"deep": ' + '{"a": ' * 5000 + "1" + "}" * 5000 + "}", flush=True)
print('{"dup": 1, "dup": 2, "": 3, "\\u0000key": 4}', flush=True)
print('{"loss": 0.25, "step": 2}', flush=True)
"""

GARBAGE_PY = r"""
import os, sys
out = sys.stdout.buffer
out.write(os.urandom(300000))
out.write(b"\n" + b"y" * (1 << 20) + b"\n")
out.write(b"\xff\xfe\x00\x1b[2J\r\r\n")
out.write(b"no newline at the end")
out.flush()
"""

ECHO_PY = r"""
import json, sys
print(json.dumps({"argv": sys.argv[1:]}), flush=True)
"""

OUTPUTS_PY = r"""
import os
out = os.environ["VH_OUTPUTS_DIR"]
open(os.path.join(out, "ok.txt"), "w").write("fine")
os.symlink("/etc/hostname", os.path.join(out, "abs-link"))
os.symlink("../../../../../../etc", os.path.join(out, "dir-link"))
os.symlink(os.path.join(out, "ok.txt"), os.path.join(out, "inner-link"))
os.makedirs(os.path.join(out, "sub"))
open(os.path.join(out, "sub", "..."), "w").write("dots")
print("done", flush=True)
"""

READER_PY = r"""
import os
for root, dirs, files in os.walk(os.environ["VH_INPUTS_DIR"]):
    for name in files:
        print(os.path.relpath(os.path.join(root, name), os.environ["VH_INPUTS_DIR"]), flush=True)
"""


@pytest.fixture
def hostile(make_project) -> Path:
    return make_project(
        HOSTILE_STEPS,
        {
            "metrics.py": METRICS_PY,
            "garbage.py": GARBAGE_PY,
            "echo.py": ECHO_PY,
            "outputs.py": OUTPUTS_PY,
            "reader.py": READER_PY,
            "data/inside.txt": "inside",
        },
    )


def run_json(capsys, project: Path, *args: str) -> tuple[int, dict, str]:
    code, out, err = sweep(
        capsys, "run", *args, "--runtime", "local", "--json", "-f", str(project / "valohai.yaml")
    )
    assert "Traceback" not in err
    return code, (json.loads(out) if out.strip() else {}), err


def test_hostile_metric_lines(hostile: Path, capsys) -> None:
    code, record, err = run_json(capsys, hostile, "metrics")
    assert code == 0, err
    metrics = record["metrics"]
    assert metrics["loss"] == 0.25 and metrics["step"] == 2
    assert metrics["acc"] == "nan" and metrics["up"] == "inf" and metrics["down"] == "-inf"
    assert "big" not in metrics and "nested" not in metrics and "deep" not in metrics
    store = Store.open(hostile / ".sweeper")
    row = store.read_dataset("executions").to_pylist()[0]
    assert row["metric.loss"] == 0.25
    keys = {m["key"] for m in store.read_dataset("metrics").to_pylist()}
    assert {"loss", "acc", "up", "down", "step"} <= keys
    for command in (
        ["show", "latest"],
        ["show", "latest", "--json"],
        ["ls"],
        ["ls", "--format", "json"],
    ):
        code, out, err = sweep(capsys, *command, "-f", str(hostile / "valohai.yaml"))
        assert code == 0 and "Traceback" not in err, err
    assert (
        hostile / ".sweeper" / "executions" / record["id"] / "logs.txt"
    ).stat().st_size < 8 << 20


def test_binary_garbage_and_megabyte_lines(hostile: Path, capsys) -> None:
    code, record, err = run_json(capsys, hostile, "garbage")
    assert code == 0, err
    log = hostile / ".sweeper" / "executions" / record["id"] / "logs.txt"
    text = log.read_text(encoding="utf-8")  # valid UTF-8, whatever the step printed
    assert text.endswith("no newline at the end\n")
    assert max(len(line.encode()) for line in text.splitlines()) <= 3 * 64 * 1024
    code, out, err = sweep(capsys, "logs", "latest", "-f", str(hostile / "valohai.yaml"))
    assert code == 0 and "Traceback" not in err


@pytest.mark.parametrize(
    "value",
    [
        "$(touch {canary})",
        "`touch {canary}`",
        "; touch {canary}; echo",
        "' ; touch {canary} ; '",
        '" ; touch {canary} ; "',
        "a\nb\ntouch {canary}",
        "&& touch {canary} || | > {canary} < /dev/null",
        "$HOME ${{PATH}} \\ * ? ~ #!",
        "--text=injected",
    ],
)
def test_parameter_values_are_never_executed(
    value: str, hostile: Path, tmp_path: Path, capsys
) -> None:
    canary = tmp_path / "canary"
    text = value.format(canary=canary)
    code, record, err = run_json(capsys, hostile, "echo", "-p", f"text={text}")
    assert code == 0, err
    assert not canary.exists()
    assert record["metrics"]["argv"] == [f"--text={text}"]
    assert record["parameters"]["text"] == text


def test_outputs_pointing_outside_are_refused(hostile: Path, capsys) -> None:
    code, record, err = run_json(capsys, hostile, "outputs")
    assert code == 0, err
    paths = sorted(o["path"] for o in record["outputs"])
    assert paths == ["inner-link", "ok.txt", "sub/..."]
    log = (hostile / ".sweeper" / "executions" / record["id"] / "logs.txt").read_text()
    assert "output abs-link refused" in log
    hostname = Path("/etc/hostname").read_bytes()
    for blob in (hostile / ".sweeper" / "blobs").rglob("*"):
        if blob.is_file() and blob.stat().st_size == len(hostname):
            assert blob.read_bytes() != hostname


def test_input_paths_that_leave_their_folder_are_refused(
    hostile: Path, tmp_path: Path, capsys
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret outside")
    (hostile / "link-out.txt").symlink_to(outside)
    (hostile / "dir-out").symlink_to(tmp_path)
    config = ["-f", str(hostile / "valohai.yaml")]
    # a project's own defaults stay inside the project: no ../ escape, no absolute path
    for step, expected in (("climber", "outside the project folder"), ("rooted", "absolute path")):
        clean_error(sweep(capsys, "run", step, "--runtime", "local", *config), expected)
    # relative paths, symlinks and schemes given on the command line are checked too
    cases = {
        "../outside.txt": "outside the project folder",
        "data/../../outside.txt": "outside the project folder",
        "link-out.txt": "outside the project folder",
        "dir-out/outside.txt": "outside the project folder",
        "dir-out/*.txt": "outside the project folder",
        "ftp://example.com/data.csv": 'unsupported URI scheme "ftp"',
        "javascript://alert(1)": "unsupported URI scheme",
        "datum://../../etc/passwd": "datum://<sha256",
    }
    for uri, expected in cases.items():
        clean_error(
            sweep(
                capsys,
                "run",
                "reader",
                "--runtime",
                "local",
                "--input",
                f"data={uri}",
                "-f",
                str(hostile / "valohai.yaml"),
            ),
            expected,
        )
    clean_error(
        sweep(
            capsys,
            "run",
            "reader",
            "--runtime",
            "local",
            "--input",
            "renamed=data/inside.txt",
            "-f",
            str(hostile / "valohai.yaml"),
        ),
        "escape",
    )
    assert not (hostile / ".sweeper" / "tmp" / "escaped.txt").exists()
    # nothing ran, nothing was recorded
    store = hostile / ".sweeper"
    assert not store.exists() or Store.open(store).read_dataset("executions").num_rows == 0


def test_an_absolute_input_path_on_the_command_line_is_the_users_file(
    hostile: Path, tmp_path: Path, capsys
) -> None:
    outside = tmp_path / "mine" / "outside.txt"
    outside.parent.mkdir()
    outside.write_text("my own data")
    code, record, err = run_json(capsys, hostile, "reader", "--input", f"data={outside}")
    assert code == 0, err
    [read] = record["inputs"]
    assert read["name"] == "data" and read["uri"] == outside.as_uri(), read
    assert read["path"] == "data/outside.txt" and read["size"] == len("my own data"), read
    log = (hostile / ".sweeper" / "executions" / record["id"] / "logs.txt").read_text()
    assert "data/outside.txt" in log.splitlines(), log


def test_store_uris_that_climb_out_are_refused(hostile: Path, capsys) -> None:
    # A real execution with outputs first: the store is there, so a refusal below comes from
    # the traversal handling and not from an empty store.
    code, producer, err = run_json(capsys, hostile, "outputs")
    assert code == 0, err
    config = ["-f", str(hostile / "valohai.yaml")]
    ok = next(o for o in producer["outputs"] if o["path"] == "ok.txt")
    for uri in (
        f"execution://{producer['id']}/outputs/../execution.json",
        f"execution://{producer['id']}/outputs/../../sweeper-store.json",
        f"execution://{producer['id']}/outputs/sub/../../logs.txt",
        "execution://latest/outputs/./../../../etc/hostname",
    ):
        clean_error(
            sweep(capsys, "run", "reader", "--runtime", "local", "--input", f"data={uri}", *config),
            f"execution {producer['id']} has no output",
            "ok.txt",  # the outputs it does have
        )
    clean_error(
        sweep(
            capsys,
            *("run", "reader", "--runtime", "local", "--input"),
            f"data=datum://{ok['sha256']}/../../etc/passwd",
            *config,
        ),
        "is not datum://<sha256",
    )
    # refused before running: only the producer is in the store
    assert Store.open(hostile / ".sweeper").read_dataset("executions").num_rows == 1
    # while the output it does have is handed over
    code, reader, err = run_json(
        capsys, hostile, "reader", "--input", f"data=execution://{producer['id']}/outputs/ok.txt"
    )
    assert code == 0, err
    assert [i["sha256"] for i in reader["inputs"]] == [ok["sha256"]]
    assert (
        "data/ok.txt"
        in (hostile / ".sweeper" / "executions" / reader["id"] / "logs.txt").read_text()
    )


def test_outputs_download_refuses_paths_outside(hostile: Path, tmp_path: Path, capsys) -> None:
    code, record, err = run_json(capsys, hostile, "outputs")
    assert code == 0
    path = hostile / ".sweeper" / "executions" / record["id"] / "execution.json"
    data = json.loads(path.read_text())
    data["outputs"][0]["path"] = "../../evil.txt"
    path.write_text(json.dumps(data))
    dest = tmp_path / "dl" / "deeper"
    clean_error(
        sweep(
            capsys, "outputs", record["id"], "-d", str(dest), "-f", str(hostile / "valohai.yaml")
        ),
        "outside",
    )
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "dl").exists() or os.listdir(tmp_path / "dl") in ([], ["deeper"])
