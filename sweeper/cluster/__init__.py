"""Ray at the edge: connecting to a cluster and the actor that runs executions."""

from sweeper.cluster.actors import ActorPool, ExecutionActor, TrialHandle
from sweeper.cluster.connect import ClusterInfo, connect, shutdown

__all__ = ["ActorPool", "ClusterInfo", "ExecutionActor", "TrialHandle", "connect", "shutdown"]
