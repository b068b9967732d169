"""Tests for sweeper.execution.inputs: resolving, fetching, caching and refusing inputs.

Remote sources are real servers on 127.0.0.1: ``http.server`` for HTTP and moto's S3
server for ``s3://``. ``datum://`` and ``execution://`` are read from a real
``sweeper.store.Store`` (a folder, or a bucket on the moto server) written through its own
API. The step inputs are small stand-ins of ``sweeper.config.Input``: only the attributes
inputs.py reads.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sweeper.errors import InputError
from sweeper.execution import inputs as inputs_module
from sweeper.execution.inputs import InputFile, fetch_inputs, resolve_inputs
from sweeper.store import Store
from tests.requirements import require_moto
from tests.store.store_workers import make_record


@dataclass(frozen=True)
class Input:
    """Stand-in for sweeper.config.Input with the attributes inputs.py reads."""

    name: str
    default: tuple[str, ...] = ()
    optional: bool = False
    filename: str | None = None
    keep_directories: str = "none"
    download: str = "always"
    description: str | None = None


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def dirs(tmp_path: Path) -> dict[str, Path]:
    project = tmp_path / "project"
    write(project / "data" / "a.csv", b"a,1\n")
    write(project / "data" / "b.csv", b"b,2\n")
    write(project / "data" / "train" / "x.npz", b"x" * 10)
    write(project / "data" / "train" / "deep" / "y.npz", b"y" * 20)
    write(project / "data" / "z.npz", b"z" * 5)
    return {
        "project": project,
        "inputs": tmp_path / "work" / "inputs",
        "cache": tmp_path / "cache",
        "outside": tmp_path / "outside",
    }


def fetch(dirs: dict[str, Path], step: list[Input], uris: dict[str, list[str]], **kw: Any):
    return fetch_inputs(
        uris,
        step,
        inputs_dir=dirs["inputs"],
        project_dir=dirs["project"],
        cache_dir=dirs["cache"],
        **kw,
    )


def placed(dirs: dict[str, Path]) -> dict[str, bytes]:
    root = dirs["inputs"]
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --------------------------------------------------------------------------- resolve_inputs


def test_resolve_merges_defaults_and_given(tmp_path: Path) -> None:
    step = [
        Input("train", default=("data/a.csv",)),
        Input("test", default=("data/b.csv",)),
        Input("extra", optional=True),
    ]
    got = resolve_inputs(step, {"test": ["s3://bucket/t.csv", " "]}, project_dir=tmp_path)
    assert got == {"train": ["data/a.csv"], "test": ["s3://bucket/t.csv"], "extra": []}
    assert list(got) == ["train", "test", "extra"]


def test_resolve_empty_given_clears_an_optional_default(tmp_path: Path) -> None:
    step = [Input("extra", default=("data/a.csv",), optional=True)]
    assert resolve_inputs(step, {"extra": []}, project_dir=tmp_path) == {"extra": []}


def test_resolve_unknown_input_lists_the_step_inputs(tmp_path: Path) -> None:
    step = [Input("train", default=("a",)), Input("test", default=("b",))]
    with pytest.raises(InputError, match=r'unknown input "tarin".*train, test'):
        resolve_inputs(step, {"tarin": ["x"]}, project_dir=tmp_path)


def test_resolve_missing_required_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r'input "model" is required'):
        resolve_inputs([Input("model")], {}, project_dir=tmp_path)
    with pytest.raises(InputError, match=r'input "model" is required'):
        resolve_inputs([Input("model", default=("m.pkl",))], {"model": []}, project_dir=tmp_path)


def test_resolve_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(InputError, match='^input "x": unsupported URI scheme "ftp"') as info:
        resolve_inputs([Input("x")], {"x": ["ftp://host/file.csv"]}, project_dir=tmp_path)
    message = str(info.value)
    assert message.startswith('input "x": unsupported URI scheme "ftp" in ftp://host/file.csv;')
    assert "supported:" in message and "s3://" in message and "https://" in message


@pytest.mark.parametrize("uri", ["../secret.txt", "data/../../secret.txt", "../*.txt"])
def test_resolve_refuses_local_paths_outside_the_project(tmp_path: Path, uri: str) -> None:
    project = tmp_path / "project"
    project.mkdir()
    with pytest.raises(InputError, match='input "x": .* outside the project folder'):
        resolve_inputs([Input("x")], {"x": [uri]}, project_dir=project)


def test_resolve_refuses_absolute_local_paths_in_defaults(tmp_path: Path) -> None:
    # A path given on the command line is the user's choice (tests/execution/test_input_paths.py);
    # a valohai.yaml default stays inside the project.
    with pytest.raises(InputError, match="absolute path /etc/passwd; .* use file:///etc/passwd"):
        resolve_inputs([Input("x", default=("/etc/passwd",))], {}, project_dir=tmp_path)


# --------------------------------------------------------------------------- local files


def test_local_path(dirs: dict[str, Path]) -> None:
    files = fetch(dirs, [Input("train", default=("data/a.csv",))], {})
    assert files == [InputFile("train", "data/a.csv", "train/a.csv", sha(b"a,1\n"), 4)]
    assert placed(dirs) == {"train/a.csv": b"a,1\n"}
    # materialized from the read-only cache blob, not written in place
    assert (dirs["cache"] / "blobs" / sha(b"a,1\n")).read_bytes() == b"a,1\n"


def test_file_uri_may_point_outside_the_project(dirs: dict[str, Path]) -> None:
    source = write(dirs["outside"] / "big data.bin", b"payload")
    uri = "file://" + str(source).replace(" ", "%20")
    files = fetch(dirs, [Input("blob")], {"blob": [uri]})
    assert [(f.path, f.sha256, f.uri) for f in files] == [
        ("blob/big data.bin", sha(b"payload"), uri)
    ]
    assert placed(dirs) == {"blob/big data.bin": b"payload"}


def test_file_uri_wildcard(dirs: dict[str, Path]) -> None:
    uri = "file://" + str(dirs["project"] / "data") + "/*.csv"
    files = fetch(dirs, [Input("t")], {"t": [uri]})
    assert [f.path for f in files] == ["t/a.csv", "t/b.csv"]
    assert files[0].uri == "file://" + str(dirs["project"] / "data" / "a.csv")


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        ("none", ["d/x.npz", "d/y.npz", "d/z.npz"]),
        ("suffix", ["d/train/deep/y.npz", "d/train/x.npz", "d/z.npz"]),
        ("full", ["d/data/train/deep/y.npz", "d/data/train/x.npz", "d/data/z.npz"]),
    ],
)
def test_local_recursive_glob_keep_directories(
    dirs: dict[str, Path], keep: str, expected: list[str]
) -> None:
    files = fetch(dirs, [Input("d", default=("data/**/*.npz",), keep_directories=keep)], {})
    assert sorted(f.path for f in files) == expected
    assert sorted(placed(dirs)) == expected
    by_name = {Path(f.path).name: f for f in files}
    assert by_name["y.npz"].uri == "data/train/deep/y.npz"
    assert by_name["y.npz"].sha256 == sha(b"y" * 20) and by_name["y.npz"].size == 20


def test_local_single_star_stays_in_one_folder(dirs: dict[str, Path]) -> None:
    files = fetch(dirs, [Input("d", default=("data/*.npz",))], {})
    assert [f.path for f in files] == ["d/z.npz"]


def test_local_star_does_not_match_across_folders_after_double_star(
    dirs: dict[str, Path],
) -> None:
    write(dirs["project"] / "data" / "train" / "t1.npz", b"t")
    files = fetch(dirs, [Input("d", default=("data/**/t*.npz",))], {})
    assert [f.path for f in files] == ["d/t1.npz"]


def test_several_uris_keep_order(dirs: dict[str, Path]) -> None:
    step = [Input("a", default=("data/b.csv", "data/a.csv")), Input("b", default=("data/z.npz",))]
    assert [f.path for f in fetch(dirs, step, {})] == ["a/b.csv", "a/a.csv", "b/z.npz"]


def test_filename_renames_a_single_file(dirs: dict[str, Path]) -> None:
    files = fetch(dirs, [Input("m", default=("data/a.csv",), filename="train.csv")], {})
    assert [f.path for f in files] == ["m/train.csv"]
    assert placed(dirs) == {"m/train.csv": b"a,1\n"}


def test_filename_with_several_files_is_refused(dirs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="renames one file, but the input has 2"):
        fetch(dirs, [Input("m", default=("data/*.csv",), filename="one.csv")], {})


def test_two_files_with_the_same_name_are_refused(dirs: dict[str, Path]) -> None:
    write(dirs["project"] / "other" / "a.csv", b"other")
    with pytest.raises(InputError, match='both be saved as "a.csv"'):
        fetch(dirs, [Input("m", default=("data/a.csv", "other/a.csv"))], {})


def test_undeclared_input_is_fetched_plainly(dirs: dict[str, Path]) -> None:
    files = fetch(dirs, [], {"loose": ["data/a.csv"]})
    assert [f.path for f in files] == ["loose/a.csv"]


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("filename", ["../escape.csv", "a/../../escape.csv", "/etc/evil", ".."])
def test_filename_escaping_the_input_folder_is_refused(
    dirs: dict[str, Path], filename: str
) -> None:
    with pytest.raises(InputError, match="would escape inputs/m/"):
        fetch(dirs, [Input("m", default=("data/a.csv",), filename=filename)], {})
    assert not (dirs["inputs"].parent / "escape.csv").exists()


def test_input_name_that_is_a_path_is_refused(dirs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="cannot be used as a folder name"):
        fetch(dirs, [Input("../up", default=("data/a.csv",))], {})


def test_symlink_pointing_outside_the_project_is_refused(dirs: dict[str, Path]) -> None:
    secret = write(dirs["outside"] / "secret.txt", b"secret")
    (dirs["project"] / "data" / "leak.csv").symlink_to(secret)
    with pytest.raises(InputError, match="outside the project folder"):
        fetch(dirs, [Input("d", default=("data/leak.csv",))], {})
    with pytest.raises(InputError, match="outside the project folder"):
        fetch(dirs, [Input("d", default=("data/*.csv",))], {})
    assert not dirs["inputs"].exists() or placed(dirs) == {}


def test_symlink_inside_the_project_is_followed(dirs: dict[str, Path]) -> None:
    (dirs["project"] / "link.csv").symlink_to(dirs["project"] / "data" / "a.csv")
    files = fetch(dirs, [Input("d", default=("link.csv",))], {})
    assert [(f.path, f.sha256) for f in files] == [("d/link.csv", sha(b"a,1\n"))]


def test_symlinked_destination_folder_is_refused(dirs: dict[str, Path]) -> None:
    dirs["outside"].mkdir(parents=True)
    dirs["inputs"].mkdir(parents=True)
    (dirs["inputs"] / "d").symlink_to(dirs["outside"])
    with pytest.raises(InputError, match="through a symlink outside inputs/d/"):
        fetch(dirs, [Input("d", default=("data/a.csv",))], {})
    assert list(dirs["outside"].iterdir()) == []


def test_symlinked_destination_subfolder_is_refused(dirs: dict[str, Path]) -> None:
    dirs["outside"].mkdir(parents=True)
    (dirs["inputs"] / "d").mkdir(parents=True)
    (dirs["inputs"] / "d" / "sub").symlink_to(dirs["outside"])
    with pytest.raises(InputError, match="through a symlink outside inputs/d/"):
        fetch(dirs, [Input("d", default=("data/a.csv",), filename="sub/a.csv")], {})
    assert list(dirs["outside"].iterdir()) == []


def test_missing_local_file(dirs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match=r'input "d": no such file data/nope.csv'):
        fetch(dirs, [Input("d", default=("data/nope.csv",))], {})


def test_wildcard_matching_nothing(dirs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match=r"data/\*\.parquet matched no files"):
        fetch(dirs, [Input("d", default=("data/*.parquet",))], {})


def test_folder_without_wildcard_suggests_one(dirs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match=r"is a folder; .* data/\*\*"):
        fetch(dirs, [Input("d", default=("data",))], {})


def test_unsupported_scheme_at_fetch(dirs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match='unsupported URI scheme "ftp" in ftp://h/x'):
        fetch(dirs, [Input("d")], {"d": ["ftp://h/x"]})


def test_unknown_keep_directories_value(dirs: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="keep-directories must be one of"):
        fetch(dirs, [Input("d", default=("data/a.csv",), keep_directories="all")], {})


# --------------------------------------------------------------------------- caching


def test_local_file_is_hashed_once_until_it_changes(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    step = [Input("d", default=("data/a.csv",))]
    ingested: list[str] = []
    original = inputs_module.InputCache.ingest

    def spy(self: Any, chunks: Any) -> tuple[str, int]:
        result = original(self, chunks)
        ingested.append(result[0])
        return result

    monkeypatch.setattr(inputs_module.InputCache, "ingest", spy)
    fetch(dirs, step, {})
    fetch(dirs, step, {})
    assert ingested == [sha(b"a,1\n")]
    source = dirs["project"] / "data" / "a.csv"
    source.write_bytes(b"changed,3\n")
    os.utime(source, ns=(1, 1))
    files = fetch(dirs, step, {})
    assert files[0].sha256 == sha(b"changed,3\n")
    assert ingested == [sha(b"a,1\n"), sha(b"changed,3\n")]
    assert placed(dirs) == {"d/a.csv": b"changed,3\n"}


# --------------------------------------------------------------------------- http


class _Handler(http.server.SimpleHTTPRequestHandler):
    bodies: list[str]
    auth: list[str | None]

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.auth.append(self.headers.get("Authorization"))
        super().do_GET()

    def copyfile(self, source: Any, outputfile: Any) -> None:
        self.bodies.append(self.path)
        super().copyfile(source, outputfile)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path, _Handler]]:
    root = tmp_path / "www"
    root.mkdir()
    bodies: list[str] = []
    auth: list[str | None] = []

    class Handler(_Handler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(root), **kwargs)

    Handler.bodies = bodies
    Handler.auth = auth
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, Handler  # type: ignore[misc]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def test_http_download_and_cache(dirs: dict[str, Path], http_server: Any) -> None:
    base, root, handler = http_server
    write(root / "sets" / "mnist.npz", b"mnist-bytes")
    step = [Input("dataset")]
    uris = {"dataset": [f"{base}/sets/mnist.npz"]}
    files = fetch(dirs, step, uris)
    assert files == [
        InputFile("dataset", f"{base}/sets/mnist.npz", "dataset/mnist.npz", sha(b"mnist-bytes"), 11)
    ]
    assert handler.bodies == ["/sets/mnist.npz"]

    # unchanged: a conditional GET answers 304 and nothing is downloaded again
    files_again = fetch(dirs, step, uris)
    assert files_again == files
    assert handler.bodies == ["/sets/mnist.npz"]
    assert len(handler.auth) == 2
    assert placed(dirs) == {"dataset/mnist.npz": b"mnist-bytes"}

    # changed on the server: downloaded again
    (root / "sets" / "mnist.npz").write_bytes(b"mnist-v2")
    os.utime(root / "sets" / "mnist.npz", (2_000_000_000, 2_000_000_000))
    files_new = fetch(dirs, step, uris)
    assert files_new[0].sha256 == sha(b"mnist-v2")
    assert handler.bodies == ["/sets/mnist.npz", "/sets/mnist.npz"]


class _EtagHandler(http.server.BaseHTTPRequestHandler):
    """Serves one body with an ETag and no Last-Modified; answers If-None-Match with 304."""

    body = b"etag-body"
    etag = '"v1"'
    bodies: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.headers.get("If-None-Match") == self.etag:
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", self.etag)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)
        self.bodies.append(self.path)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def test_http_etag_cache(dirs: dict[str, Path]) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EtagHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/file.bin"
        _EtagHandler.bodies = []
        first = fetch(dirs, [Input("e")], {"e": [uri]})
        second = fetch(dirs, [Input("e")], {"e": [uri]})
        assert first == second and first[0].sha256 == sha(b"etag-body")
        assert _EtagHandler.bodies == ["/file.bin"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_http_basic_auth_is_sent_and_masked(dirs: dict[str, Path], http_server: Any) -> None:
    base, root, handler = http_server
    write(root / "m.pkl", b"model")
    uri = base.replace("http://", "http://alice:s3cret@") + "/m.pkl"
    files = fetch(dirs, [Input("m")], {"m": [uri]})
    assert handler.auth == ["Basic " + base64.b64encode(b"alice:s3cret").decode()]
    assert files[0].uri == base.replace("http://", "http://alice:***@") + "/m.pkl"
    assert "s3cret" not in "".join(p.read_text() for p in (dirs["cache"] / "uris").iterdir())


def test_http_not_found(dirs: dict[str, Path], http_server: Any) -> None:
    base, _, _ = http_server
    with pytest.raises(InputError, match=r'input "m": cannot read .*/nope\.bin: HTTP 404'):
        fetch(dirs, [Input("m")], {"m": [f"{base}/nope.bin"]})


def test_http_unreachable(dirs: dict[str, Path]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(InputError, match=rf'input "m": cannot read http://127.0.0.1:{port}/x'):
        fetch(dirs, [Input("m")], {"m": [f"http://127.0.0.1:{port}/x"]})


def test_http_url_without_file_name_needs_filename(dirs: dict[str, Path], http_server: Any) -> None:
    base, root, _ = http_server
    write(root / "index.html", b"<html/>")
    with pytest.raises(InputError, match="set the input's filename"):
        fetch(dirs, [Input("page")], {"page": [f"{base}/"]})
    files = fetch(dirs, [Input("page", filename="page.html")], {"page": [f"{base}/"]})
    assert placed(dirs) == {"page/page.html": b"<html/>"} and files[0].size == 7


# --------------------------------------------------------------------------- s3 (moto server)


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    moto_server = require_moto()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def bucket(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, request: Any) -> Any:
    import boto3

    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = "bucket-" + hashlib.sha1(request.node.name.encode()).hexdigest()[:10]
    client.create_bucket(Bucket=name)
    for key, body in {
        "data/train/a.csv": b"a" * 3,
        "data/train/sub/b.csv": b"b" * 4,
        "data/test/c.csv": b"c" * 5,
        "data/readme.txt": b"hello",
    }.items():
        client.put_object(Bucket=name, Key=key, Body=body)
    return client, name


def test_s3_single_object_with_endpoint_from_env(
    dirs: dict[str, Path], bucket: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, name = bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    files = fetch(dirs, [Input("r", default=(f"s3://{name}/data/readme.txt",))], {})
    assert files == [
        InputFile("r", f"s3://{name}/data/readme.txt", "r/readme.txt", sha(b"hello"), 5)
    ]
    assert placed(dirs) == {"r/readme.txt": b"hello"}


@pytest.mark.parametrize(
    ("keep", "expected"),
    [
        ("none", ["d/a.csv", "d/b.csv", "d/c.csv"]),
        ("suffix", ["d/test/c.csv", "d/train/a.csv", "d/train/sub/b.csv"]),
        ("full", ["d/data/test/c.csv", "d/data/train/a.csv", "d/data/train/sub/b.csv"]),
    ],
)
def test_s3_wildcard_keep_directories(
    dirs: dict[str, Path], bucket: Any, moto_endpoint: str, keep: str, expected: list[str]
) -> None:
    _, name = bucket
    step = [Input("d", default=(f"s3://{name}/data/*.csv",), keep_directories=keep)]
    files = fetch(dirs, step, {}, s3_endpoint_url=moto_endpoint)
    assert sorted(f.path for f in files) == expected
    assert sorted(placed(dirs)) == expected
    assert sorted(f.uri for f in files) == [
        f"s3://{name}/data/test/c.csv",
        f"s3://{name}/data/train/a.csv",
        f"s3://{name}/data/train/sub/b.csv",
    ]


def test_s3_is_cached_until_the_object_changes(
    dirs: dict[str, Path], bucket: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, name = bucket
    step = [Input("d", default=(f"s3://{name}/data/train/**",))]
    first = fetch(dirs, step, {}, s3_endpoint_url=moto_endpoint)
    assert [f.path for f in first] == ["d/a.csv", "d/b.csv"]

    def no_download(self: Any, chunks: Any) -> tuple[str, int]:
        raise AssertionError("downloaded although the object is unchanged")

    with monkeypatch.context() as patch:
        patch.setattr(inputs_module.InputCache, "ingest", no_download)
        assert fetch(dirs, step, {}, s3_endpoint_url=moto_endpoint) == first

    client.put_object(Bucket=name, Key="data/train/a.csv", Body=b"new content")
    again = fetch(dirs, step, {}, s3_endpoint_url=moto_endpoint)
    assert again[0].sha256 == sha(b"new content") and again[1] == first[1]
    assert placed(dirs)["d/a.csv"] == b"new content"


def test_s3_missing_object(dirs: dict[str, Path], bucket: Any, moto_endpoint: str) -> None:
    _, name = bucket
    with pytest.raises(InputError, match=rf'input "d": no such file s3://{name}/nope.csv'):
        fetch(dirs, [Input("d")], {"d": [f"s3://{name}/nope.csv"]}, s3_endpoint_url=moto_endpoint)
    with pytest.raises(InputError, match="matched no files"):
        fetch(dirs, [Input("d")], {"d": [f"s3://{name}/none/*.csv"]}, s3_endpoint_url=moto_endpoint)


def test_s3_folder_without_wildcard(dirs: dict[str, Path], bucket: Any, moto_endpoint: str) -> None:
    _, name = bucket
    with pytest.raises(InputError, match="is a folder"):
        fetch(dirs, [Input("d")], {"d": [f"s3://{name}/data"]}, s3_endpoint_url=moto_endpoint)


# --------------------------------------------------------------------------- datum:// and execution://


PRODUCER = "01JEX0001ABCDEFGH"
PRODUCED = {"model.pkl": b"weights", "plots/loss.png": b"png", "plots/acc.png": b"a"}


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """A real store (a folder, or a bucket on the moto server) holding one execution whose
    outputs were put as blobs and recorded through the store's own API, as the runner does."""
    if request.param == "local":
        store = Store.open(tmp_path / "store", create=True)
    else:
        client, name = request.getfixturevalue("bucket")
        endpoint = request.getfixturevalue("moto_endpoint").removeprefix("http://")
        location = f"s3://{name}/store?endpoint_override={endpoint}&scheme=http&region=us-east-1"
        store = Store.open(location, create=True)
    outputs = [
        {"path": path, "sha256": store.put_bytes(data), "size": len(data), "uri": ""}
        for path, data in PRODUCED.items()
    ]
    for output in outputs:
        output["uri"] = f"datum://{output['sha256']}"
    store.write_execution(make_record(1, id=PRODUCER, outputs=outputs), [])
    return store


def test_datum_uri(dirs: dict[str, Path], store: Store) -> None:
    digest = sha(b"weights")
    # a local store hands over its own blob file; a remote one is downloaded
    assert (store.blob_local_path(digest) is None) == store.location.startswith("s3://")
    files = fetch(
        dirs, [Input("m", filename="model.pkl")], {"m": [f"datum://{digest}"]}, store=store
    )
    assert files == [InputFile("m", f"datum://{digest}", "m/model.pkl", digest, 7)]
    assert placed(dirs) == {"m/model.pkl": b"weights"}


def test_datum_uri_refusals(dirs: dict[str, Path], store: Store) -> None:
    unknown = "0" * 64
    with pytest.raises(InputError, match="no such blob in the store"):
        fetch(dirs, [Input("m")], {"m": [f"datum://{unknown}"]}, store=store)
    with pytest.raises(InputError, match="is not datum://<sha256"):
        fetch(dirs, [Input("m")], {"m": ["datum://latest-model"]}, store=store)
    with pytest.raises(InputError, match="needs a store"):
        fetch(dirs, [Input("m")], {"m": [f"datum://{sha(b'weights')}"]})


def test_corrupt_store_blob_is_refused(dirs: dict[str, Path], tmp_path: Path) -> None:
    store = Store.open(tmp_path / "store", create=True)
    digest = store.put_bytes(b"weights")
    blob = store.blob_local_path(digest)
    assert blob is not None
    blob.chmod(0o644)  # the store keeps blobs read-only; the damage comes from outside
    blob.write_bytes(b"tampered")
    with pytest.raises(InputError, match="blob is corrupt"):
        fetch(dirs, [Input("m")], {"m": [f"datum://{digest}"]}, store=store)


def test_execution_output_uri_records_the_producer(dirs: dict[str, Path], store: Store) -> None:
    files = fetch(
        dirs, [Input("m")], {"m": ["execution://01JEX0001/outputs/model.pkl"]}, store=store
    )
    assert files == [
        InputFile(
            "m",
            f"execution://{PRODUCER}/outputs/model.pkl",
            "m/model.pkl",
            sha(b"weights"),
            7,
            producer_execution_id=PRODUCER,
        )
    ]
    assert placed(dirs) == {"m/model.pkl": b"weights"}
    # "latest" names the same execution, as on the command line
    again = fetch(
        {**dirs, "inputs": dirs["inputs"].with_name("again")},
        [Input("m")],
        {"m": ["execution://latest/outputs/model.pkl"]},
        store=store,
    )
    assert [f.producer_execution_id for f in again] == [PRODUCER]


def test_execution_output_wildcard(dirs: dict[str, Path], store: Store) -> None:
    step = [Input("p", keep_directories="full")]
    files = fetch(dirs, step, {"p": ["execution://01JEX0001/outputs/plots/*.png"]}, store=store)
    assert [(f.path, f.producer_execution_id) for f in files] == [
        ("p/plots/acc.png", PRODUCER),
        ("p/plots/loss.png", PRODUCER),
    ]
    assert placed(dirs) == {"p/plots/acc.png": b"a", "p/plots/loss.png": b"png"}


def test_execution_uri_refusals(dirs: dict[str, Path], store: Store) -> None:
    with pytest.raises(
        InputError,
        match="input \"m\": execution://nope/outputs/x: unknown execution 'nope' in store",
    ):
        fetch(dirs, [Input("m")], {"m": ["execution://nope/outputs/x"]}, store=store)
    with pytest.raises(InputError, match='has no output "missing.pkl"; it has: model.pkl'):
        fetch(dirs, [Input("m")], {"m": ["execution://01JEX0001/outputs/missing.pkl"]}, store=store)
    with pytest.raises(InputError, match="is not execution://<id>/outputs/<path>"):
        fetch(dirs, [Input("m")], {"m": ["execution://01JEX0001/model.pkl"]}, store=store)
