from __future__ import annotations

import pandas as pd
import pytest

import sweeper.results
from sweeper.errors import StoreError
from sweeper.store import Store, blob_uri
from tests.results.results_records import record

SHA_DATA, SHA_MODEL, SHA_REPORT, SHA_RAW = "1" * 64, "2" * 64, "3" * 64, "0" * 64


@pytest.fixture
def sweep_store(store: Store) -> Store:
    store.write_rows(
        "sweeps",
        [
            {
                "sweep_id": "sw1",
                "step": "train",
                "sampler": "tpe",
                "metrics": ["loss", "accuracy"],
                "directions": ["minimize", "maximize"],
                "search_space": {"lr": {"type": "float"}},
                "status": "running",
                "created_at": "2026-11-26T07:00:00Z",
                "updated_at": "2026-11-26T07:00:00Z",
            }
        ],
    )
    trials = [
        ("e1", "complete", 0.5, 0.70, 0.1),
        ("e2", "complete", 0.2, 0.80, 1),
        ("e3", "error", 0.01, 0.99, 0.3),
        ("e4", "complete", 0.3, 0.95, 0.4),
        ("e5", "complete", None, None, 0.5),
    ]
    for number, (eid, status, loss, accuracy, lr) in enumerate(trials, start=1):
        metrics = {} if loss is None else {"loss": loss, "accuracy": accuracy}
        store.write_execution(
            record(
                eid,
                number,
                sweep_id="sw1",
                trial_number=number - 1,
                status=status,
                parameters={"lr": lr, "act": "relu"},
                metrics=metrics,
            ),
            [{"seq": 0, "time": "2026-11-26T07:00:00Z", "values": {"loss": loss}}],
        )
    store.write_execution(record("other", 6, step="prep"), [])
    store.write_rows(
        "sweeps",
        [
            {
                "sweep_id": "sw1",
                "status": "complete",
                "metrics": ["loss", "accuracy"],
                "directions": ["minimize", "maximize"],
                "updated_at": "2026-11-26T08:00:00Z",
                "created_at": "2026-11-26T07:00:00Z",
                "best_execution_id": "e2",
            }
        ],
    )
    return store


def test_executions_filters(sweep_store: Store) -> None:
    results = sweeper.results.open(sweep_store.location)
    df = results.executions()
    assert list(df["execution_id"]) == ["e1", "e2", "e3", "e4", "e5", "other"]
    assert list(results.executions(sweep_id="sw1", status="complete")["execution_id"]) == [
        "e1",
        "e2",
        "e4",
        "e5",
    ]
    assert list(results.executions(step="prep")["execution_id"]) == ["other"]
    assert df["param.lr"].dtype == "float64"
    assert isinstance(df["created_at"].dtype, pd.DatetimeTZDtype)
    with pytest.raises(StoreError, match="unknown sweep"):
        results.executions(sweep_id="nope")


def test_sweeps_keep_the_latest_row(sweep_store: Store) -> None:
    sweeps = sweeper.results.open(sweep_store).sweeps()
    assert len(sweeps) == 1
    row = sweeps.iloc[0]
    assert row["status"] == "complete" and row["best_execution_id"] == "e2"
    assert row["metrics"] == ["loss", "accuracy"]


def test_best_defaults_to_the_first_objective(sweep_store: Store) -> None:
    results = sweeper.results.open(sweep_store)
    assert list(results.best("sw1")["execution_id"]) == ["e2", "e4", "e1"]
    assert list(results.best("sw1", k=1)["execution_id"]) == ["e2"]
    assert list(results.best("sw1", metric="accuracy")["execution_id"]) == ["e4", "e2", "e1"]
    assert list(results.best("sw1", metric="loss", direction="max")["execution_id"]) == [
        "e1",
        "e4",
        "e2",
    ]
    with pytest.raises(StoreError, match="known metrics: accuracy, loss"):
        results.best("sw1", metric="f1", direction="maximize")
    with pytest.raises(StoreError, match="pass direction"):
        results.best("sw1", metric="f1")
    with pytest.raises(StoreError, match="unknown sweep"):
        results.best("nope", metric="loss", direction="minimize")
    with pytest.raises(StoreError, match="no recorded objective"):
        results.best("nope")


def test_metrics_artifacts_and_to_arrow(sweep_store: Store) -> None:
    results = sweeper.results.open(sweep_store)
    assert len(results.metrics()) == 5
    one = results.metrics("e2")
    assert list(one["value"]) == [0.2]
    assert results.to_arrow("executions").num_rows == 6
    assert results.artifacts().empty
    with pytest.raises(StoreError, match="unknown execution"):
        results.metrics("zzz")


def test_compare_side_by_side(sweep_store: Store) -> None:
    df = sweeper.results.open(sweep_store).compare(["e1", "#2", "other"])
    assert list(df.columns) == ["e1", "e2", "other"]
    assert df.loc["param.lr", "e1"] == 0.1 and df.loc["param.lr", "e2"] == 1
    assert df.loc["metric.loss", "e2"] == 0.2
    assert df.loc["status", "other"] == "complete"
    assert df.loc["param.lr", "other"] is None
    with pytest.raises(StoreError, match="^unknown execution 'missing' in store "):
        sweeper.results.open(sweep_store).compare(["e1", "missing"])


@pytest.fixture
def chain(store: Store) -> Store:
    """raw -> prep -> data -> train -> model -> eval -> report (three executions)."""
    store.write_execution(
        record(
            "prep",
            1,
            step="prep",
            inputs=[
                {
                    "name": "raw",
                    "uri": "s3://b/raw.csv",
                    "path": "raw/raw.csv",
                    "sha256": SHA_RAW,
                    "size": 9,
                }
            ],
            outputs=[
                {
                    "name": "data.npz",
                    "path": "data.npz",
                    "uri": blob_uri(SHA_DATA),
                    "sha256": SHA_DATA,
                    "size": 5,
                }
            ],
        ),
        [],
    )
    store.write_execution(
        record(
            "train",
            2,
            inputs=[
                {
                    "name": "data",
                    "uri": blob_uri(SHA_DATA),
                    "path": "data/data.npz",
                    "sha256": SHA_DATA,
                    "size": 5,
                    "producer_execution_id": "prep",
                }
            ],
            outputs=[
                {
                    "name": "model.pkl",
                    "path": "model.pkl",
                    "uri": blob_uri(SHA_MODEL),
                    "sha256": SHA_MODEL,
                    "size": 7,
                }
            ],
        ),
        [],
    )
    store.write_execution(
        record(
            "eval",
            3,
            step="eval",
            inputs=[
                {
                    "name": "model",
                    "uri": blob_uri(SHA_MODEL),
                    "path": "model/model.pkl",
                    "sha256": SHA_MODEL,
                    "size": 7,
                    "producer_execution_id": None,
                }
            ],
            outputs=[
                {
                    "name": "report.json",
                    "path": "report.json",
                    "uri": blob_uri(SHA_REPORT),
                    "sha256": SHA_REPORT,
                    "size": 2,
                }
            ],
        ),
        [],
    )
    store.write_execution(record("unrelated", 4), [])
    return store


def test_lineage_of_the_middle_execution(chain: Store) -> None:
    lineage = sweeper.results.open(chain).lineage("train")
    assert lineage.root == "train"
    assert lineage.upstream == [blob_uri(SHA_DATA), "prep", blob_uri(SHA_RAW)]
    assert lineage.downstream == [blob_uri(SHA_MODEL), "eval", blob_uri(SHA_REPORT)]
    assert lineage.executions("upstream") == ["prep"]
    assert lineage.executions("downstream") == ["eval"]
    edges = {(e.source, e.target, e.kind) for e in lineage.edges}
    assert ("prep", blob_uri(SHA_DATA), "output") in edges
    assert (blob_uri(SHA_DATA), "train", "input") in edges
    assert ("train", blob_uri(SHA_MODEL), "output") in edges
    assert (blob_uri(SHA_MODEL), "eval", "input") in edges
    assert lineage.nodes["eval"].attrs["step"] == "eval"
    data = lineage.to_dict()
    assert data["root"] == "train" and "unrelated" not in {n["id"] for n in data["nodes"]}
    assert {n["id"]: n["kind"] for n in data["nodes"]}[blob_uri(SHA_MODEL)] == "datum"


def test_lineage_is_recursive_both_ways(chain: Store) -> None:
    results = sweeper.results.open(chain)
    assert results.lineage("eval").executions("upstream") == ["train", "prep"]
    assert results.lineage("#1").executions("downstream") == ["train", "eval"]
    datum = results.lineage(blob_uri(SHA_DATA))
    assert datum.executions("upstream") == ["prep"]
    assert datum.executions("downstream") == ["train", "eval"]
    assert results.lineage("unrelated").to_dict()["edges"] == []


def test_lineage_unknown_ids(chain: Store) -> None:
    results = sweeper.results.open(chain)
    with pytest.raises(StoreError, match="unknown execution"):
        results.lineage("nope")
    with pytest.raises(StoreError, match="unknown datum"):
        results.lineage(blob_uri("f" * 64))
    with pytest.raises(StoreError, match="not a sha256"):
        results.lineage("datum://xyz")


def test_open_missing_store(tmp_path) -> None:
    with pytest.raises(StoreError, match="no sweeper store"):
        sweeper.results.open(tmp_path / "none")
