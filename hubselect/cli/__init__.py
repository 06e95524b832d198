"""The ``hubselect`` command line: one module per command group, shared option types."""

from hubselect.cli.root import app, hf_main, main  # noqa: F401
