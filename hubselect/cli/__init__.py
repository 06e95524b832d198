"""The ``hubselect`` command line: one module per command group, shared option types (see :mod:`.root`)."""

from hubselect.cli.root import app, hf_main, main  # noqa: F401
