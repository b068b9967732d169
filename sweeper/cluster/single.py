"""The policy of ``sweep run --address``: one execution on a Ray actor, its log echoed."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from sweeper.cluster.actors import ResourceShape
from sweeper.cluster.connect import ClusterInfo
from sweeper.cluster.controller import ControllerView, Launch, Policy
from sweeper.execution.runner import ExecutionContext, StopToken
from sweeper.execution.spec import ExecutionSpec
from sweeper.record import ExecutionRecord
from sweeper.store import RecordStore


class SingleRun(Policy):
    """The :class:`~sweeper.cluster.controller.Policy` of ``sweep run --address``: one execution.

    Its log is echoed as it grows when the store is a local folder (else once it ended),
    and ``stop`` (Ctrl-C in ``sweep run``) stops it on its actor.
    """

    poll_metrics = False

    def __init__(
        self,
        spec: ExecutionSpec,
        store: RecordStore,
        *,
        reuse: bool,
        stop: StopToken | None,
        echo: Callable[[str], None] | None,
    ) -> None:
        self.store = store
        self.launch = Launch(key=0, spec=spec, context=ExecutionContext(), reuse=reuse)
        self.stop = stop
        self.echo = echo
        self.record: ExecutionRecord | None = None
        self._asked = False
        self._echoed = 0  # characters of the log echoed so far

    def shapes(self) -> Sequence[ResourceShape]:
        """The one execution's shape."""
        return [ResourceShape.of(self.launch.spec)]

    def slots(self, cluster: ClusterInfo) -> int | None:
        """One at a time (there is only one)."""
        return 1

    def ask(self, controller: ControllerView, free: int) -> list[Launch]:
        """The execution, once."""
        if self._asked:
            return []
        self._asked = True
        return [self.launch]

    def exhausted(self) -> bool:
        """Once the execution has started."""
        return self._asked

    def tick(self, controller: ControllerView) -> None:
        """Pass a stop on to the actor; echo the log lines written since the last turn."""
        if self.stop is not None and self.stop.event.is_set():
            # again each turn: a stop that reaches the actor before its run began is lost
            controller.stop(self.launch.key, self.stop.reason)
        self.echo_log(self.store)

    def on_result(self, controller: ControllerView, key: Hashable, record: ExecutionRecord) -> None:
        """Keep the record."""
        self.record = record

    def echo_log(self, store: RecordStore, *, final: bool = False) -> None:
        """Echo the whole log lines not echoed yet (the rest too when ``final``)."""
        if self.echo is None:
            return
        execution_id = self.launch.execution_id
        path = store.log_file(execution_id)
        if path is None:  # a remote store: the log is uploaded when the execution ends
            data = (store.read_log(execution_id) or "").encode() if final else b""
        elif path.exists():
            with open(path, "rb") as handle:
                handle.seek(self._echoed)
                data = handle.read()
        else:
            data = b""
        if not final:
            data = data[: data.rfind(b"\n") + 1]  # a line still being written comes next turn
        self._echoed += len(data)
        for line in data.decode("utf-8", errors="replace").splitlines():
            self.echo(line)
