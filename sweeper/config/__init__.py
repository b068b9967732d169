"""valohai.yaml -> :class:`Config` (steps, tasks, pipelines), lint and command rendering.

>>> config = parse_config('''
... - step:
...     name: train
...     image: python:3.12
...     command: python train.py {parameters}
...     parameters:
...       - name: lr
...         type: float
...         default: 0.001
... ''')
>>> config.get_step("train").build_command({"lr": 0.01})
['python train.py --lr=0.01']
"""

from sweeper.config.config import Config, load_config, parse_config
from sweeper.config.edge import Edge
from sweeper.config.environment import EnvironmentVariable
from sweeper.config.expressions import Expression, ExpressionError, parse_expression
from sweeper.config.input import Input
from sweeper.config.lint import lint_file, lint_text
from sweeper.config.mount import Mount
from sweeper.config.node import Action, Node
from sweeper.config.output import Output
from sweeper.config.parameter import Parameter
from sweeper.config.pipeline import Pipeline, PipelineParameter
from sweeper.config.problems import Problem
from sweeper.config.resources import Resources
from sweeper.config.step import Step
from sweeper.config.task import SearchRange, Task, TaskParameter

__all__ = [
    "Action",
    "Config",
    "Edge",
    "EnvironmentVariable",
    "Expression",
    "ExpressionError",
    "Input",
    "Mount",
    "Node",
    "Output",
    "Parameter",
    "Pipeline",
    "PipelineParameter",
    "Problem",
    "Resources",
    "SearchRange",
    "Step",
    "Task",
    "TaskParameter",
    "lint_file",
    "lint_text",
    "load_config",
    "parse_config",
    "parse_expression",
]
