"""The ``hubselect`` command line (Typer, in the manner of the Hub's own ``hf`` CLI): the app, the output
helpers every command shares, the entry points, and the list of command groups.

Every command takes ``--zoo DIR``; data comes out as JSON with ``--json``; long work draws a
progress bar on stderr; bad input is one line on stderr and exit code 2, never a traceback.
Each command group is a module ``hubselect.cli.<group>`` with ``register(app)``; :data:`GROUPS`
lists them in the order of the flow, which is the order ``hubselect --help`` shows.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import sys

import typer

try:  # Typer >= 0.20 vendors click as typer._click; older releases use click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions

from hubselect.errors import UserError

app = typer.Typer(
    name="hubselect",
    help="Which pretrained text-to-image pipeline on the Hugging Face Hub should you fine-tune on your dataset?",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# The command groups, in the order data flows (hubselect.cli.<name>, each with register(app)).
GROUPS = ("zoo", "profile", "rank", "evaluate", "share", "finetune", "sweep", "refresh", "extension")


def _finite(obj):
    """``obj`` with every NaN or infinite float replaced by None: strict JSON parsers reject them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def echo_json(obj) -> None:
    """What ``--json`` prints: strict JSON (no NaN, no Infinity), indented."""
    typer.echo(json.dumps(_finite(obj), indent=2, allow_nan=False, default=str))


def progress_bar(desc: str, unit: str):
    """A ``(done, total, item)`` callback drawing a tqdm bar on stderr.

    The bar starts at the first report, counting what was already done as its initial value: tqdm's
    rate is then (done - initial) / time since that report, so units finished before the bar existed
    never show as millions per second (the rate reads ``?`` until a unit finishes under the bar).
    """
    from tqdm.auto import tqdm
    state: dict = {}

    def update(done: int, total: int, item: str | None) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, initial=done, desc=desc, unit=unit, file=sys.stderr,
                                      disable=None, leave=False)
        bar.n = done
        bar.set_postfix_str(item or "", refresh=False)
        bar.refresh()
        if done >= total:
            bar.close()
    return update


def quiet_libraries(prog: str) -> None:
    """Log our warnings as ``prog: message`` and silence the libraries' own advice."""
    logging.basicConfig(level=logging.WARNING, format=f"{prog}: %(message)s")
    # Library advice (convergence, deprecations) is for developers, not for a ranking's reader.
    import warnings
    for module in ("sklearn", "catboost", "xgboost", "datasets", "transformers", "diffusers", "torch"):
        warnings.filterwarnings("ignore", module=module)
    # huggingface_hub resets its logger's level when imported: import it first, then quiet it.
    # Its retry warnings would repeat what our own retry layer reports.
    from huggingface_hub.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    for noisy in ("httpx", "httpx2", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(prog_name: str = "hubselect") -> None:
    """Entry point: run the app, turning every user-facing failure into one line and exit 2."""
    quiet_libraries("hubselect")
    command = typer.main.get_command(app)
    try:
        code = command.main(prog_name=prog_name, standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("hubselect: aborted", err=True)
        sys.exit(130)
    except click_exceptions.ClickException as exc:   # usage errors: bad option, missing argument, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":   # bare `hubselect`: show the help
            typer.echo(exc.format_message())
            sys.exit(0)
        typer.echo(f"hubselect: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except UserError as exc:
        typer.echo(f"hubselect: error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    # Without standalone mode, click hands back the code of a typer.Exit raised inside a command
    # (a refused refresh, failed sweep runs) as the return value instead of raising it.
    if isinstance(code, int) and code:
        sys.exit(code)


def hf_main() -> None:
    """The ``hf-hubselect`` console script: the same commands, run by ``hf hubselect ...``."""
    main(prog_name="hf hubselect")


def register_groups(target: typer.Typer) -> None:
    """Add every group's commands to ``target``. Runs after the helpers above exist: the groups import them."""
    for group in GROUPS:
        importlib.import_module(f"{__package__}.{group}").register(target)


register_groups(app)
