"""``hubselect register-hf-extension``: make ``hf hubselect ...`` run this installation.

The manifest itself is :mod:`hubselect.cli.hf_extension`'s (its ``register(force)`` is public API, kept
under the old path ``hubselect.hf_extension`` for one release, hence this separate command module).
"""

from __future__ import annotations

import typer


def register_hf_extension(
    remove: bool = typer.Option(False, "--remove", help="Unregister instead."),
    force: bool = typer.Option(False, "--force", help="Replace another hf-hubselect registration."),
):
    """Make `hf hubselect ...` run this installation (an hf CLI extension; nothing is downloaded)."""
    from hubselect.cli import hf_extension

    if remove:
        removed = hf_extension.unregister()
        typer.echo("hf hubselect: unregistered" if removed else "hf hubselect was not registered")
        return
    manifest = hf_extension.register(force=force)
    typer.echo(f"registered: `hf hubselect ...` now runs {hf_extension.find_executable()} ({manifest})")


def register(app: typer.Typer) -> None:
    app.command("register-hf-extension")(register_hf_extension)
