"""Commands about results: ls, compare, lineage, plot, compact, doctor."""

COMMANDS: list = []
