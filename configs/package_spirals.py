"""Splits the raw CSV by label into one file per arm of the spiral, with valohai-utils.

Each file gets output properties (its row count and label), and both become one version of
the dataset ``spirals``: ``dataset://spirals/<version>``, which later executions take as an
input.
"""

import argparse

import valohai

parser = argparse.ArgumentParser()
parser.add_argument("--version", default="v1")
args = parser.parse_args()

with open(valohai.inputs("raw").path()) as raw:
    header, *rows = raw.read().splitlines()
with valohai.output_properties() as properties:
    version = properties.dataset_version_uri("spirals", args.version)
    for label in sorted({row.rsplit(",", 1)[1] for row in rows}):
        arm = [row for row in rows if row.rsplit(",", 1)[1] == label]
        name = f"arm-{label}.csv"
        with open(valohai.outputs().path(name), "w") as out:
            out.write("\n".join([header, *arm]) + "\n")
        properties.add(file=name, properties={"rows": len(arm), "label": int(label)})
        properties.add_to_dataset(file=name, dataset_version=version)
