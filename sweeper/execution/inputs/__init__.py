"""Execution inputs: resolve the URIs of a step's inputs and place their files under ``inputs/``.

Valohai's contract is that every file of input ``name`` is readable at
``/valohai/inputs/<name>/<file>`` when the command starts; locally that is
``<workdir>/inputs/<name>/<file>``. This package turns the URIs the user gave (or the step's
defaults) into those files, one module per kind of URI:

- local paths, relative to the project folder, and ``file://`` URIs (:mod:`.local`);
- ``http://`` and ``https://`` URLs, basic auth as ``https://user:password@host/...``
  (:mod:`.http`);
- ``s3://``, ``gs://``, ``hdfs://``, ``abfs://`` and the other URIs ``pyarrow.fs`` opens
  (:mod:`.objects`); for S3 an endpoint (MinIO, a test server) comes from
  ``s3_endpoint_url``, or from the ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``
  environment variables;
- ``datum://<sha256>``, a blob in the store, and ``execution://<id>/outputs/<path>``, an
  output of an earlier execution (:mod:`.datum`); these record which execution produced
  the file;
- ``dataset://NAME/VERSION``, every file of a dataset version, its maker recorded as their
  producer, and ``dataset://NAME/latest``, the newest version, which :func:`pin_latest`
  turns into that version's URI before the execution is recorded (:mod:`.dataset`).

On a cluster whose nodes may not see the driver's disk, the driver puts the local files of an
execution's inputs into the store first (:class:`InputStager`) and hands the node their
digests (``staged``): the node fetches them from the store, and the record keeps the same
URIs, paths and sha256 as on a laptop.

Wildcards select several files: ``data/**/*.npz`` and ``file:///data/*.csv`` follow glob rules
(``*`` stays within one folder, ``**/`` spans any number of them); object stores have no
folders, so there, as on Valohai, ``*`` also matches ``/``. An input's ``keep-directories``
decides where each match lands: ``none`` keeps only the file name, ``full`` the whole path
after the bucket (or project) root, ``suffix`` the part after the wildcard's fixed prefix.

Every file goes through a cache folder keyed by its sha256 (:class:`InputCache`) and is
hard-linked (or copied) into place, so a sweep of a hundred trials downloads a data set once.
A remote file is not downloaded again while its size and modification time (HTTP: ETag /
Last-Modified, asked with a conditional GET) are unchanged.

Example::

    uris = resolve_inputs(step.inputs, {"dataset": ["s3://bucket/mnist.npz"]}, project_dir=p)
    files = fetch_inputs(uris, step.inputs, inputs_dir=workdir / "inputs",
                         project_dir=p, cache_dir=cache)

A new scheme is a module here with a :class:`~.base.Source` subclass (how its file comes
into the cache) and a function listing the files a URI names, one name in
``uris.SUPPORTED_SCHEMES`` and one branch in ``core._Lister.expand``.
"""

from sweeper.execution.inputs.base import BlobStore, InputFile, InputLike, StagedFile
from sweeper.execution.inputs.cache import InputCache
from sweeper.execution.inputs.core import InputStager, fetch_inputs, resolve_inputs
from sweeper.execution.inputs.dataset import pin_latest
from sweeper.execution.inputs.uris import SUPPORTED_SCHEMES

__all__ = [
    "SUPPORTED_SCHEMES",
    "BlobStore",
    "InputCache",
    "InputFile",
    "InputLike",
    "InputStager",
    "StagedFile",
    "fetch_inputs",
    "pin_latest",
    "resolve_inputs",
]
