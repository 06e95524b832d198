"""The option types that several commands share, declared once: the zoo, ``--json``, the dataset columns,
the probe, the edge dataset, and the training options of ``finetune`` and ``sweep`` (FinetuneConfig's fields).

Choices in help texts come from their registries (probes, predictors, sweep backends, studies) and training defaults
from FinetuneConfig, never written by hand. Both are read when a command runs or shows its help, not when
the CLI starts: those modules import numpy, pandas, huggingface_hub or torch, which ``hubselect --help``
and every other command would otherwise wait for.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Callable, Optional

import typer
from typer.core import TyperCommand

from hubselect.constants import DEFAULT_EDGES_REPO, DEFAULT_PROBE, ENV_EDGES_REPO, ENV_ZOO
from hubselect.errors import UserError
from hubselect.finetune.settings import TRAINING_SETTINGS

ZooOption = typer.Option(None, "--zoo", help=f"Zoo directory (default: ${ENV_ZOO}, else your zoo in "
                                              "$HF_HOME/hubselect/zoo if it exists, else the shipped zoo; "
                                              "commands that write never write the shipped zoo).",
                         file_okay=False)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
# The dataset-column options of every command that reads a dataset (rank, profile, finetune).
ImageColumnOption = typer.Option(None, "--image-column",
                                 help="Image column of a Hub dataset (default: the first image feature).")
CaptionColumnOption = typer.Option(None, "--caption-column",
                                   help="Caption column (default: text, caption, prompt, ... when present).")
SplitOption = typer.Option(None, "--split", help="Split to use (default: train when present, else the first).")
EDGES_REPO_HELP = f"Edge dataset repo ID (default: ${ENV_EDGES_REPO}, else {DEFAULT_EDGES_REPO})."
EdgesRepoOption = typer.Option(None, "--edges-repo", help=EDGES_REPO_HELP)


# -- choices named in help texts as {name}, read from the registries -------------------------------------------

def _probes(modality: str | None = None) -> str:
    from hubselect.profile.probes import PROBES
    return ", ".join(f"{name} (captions)" if cls.modality == "text" else name
                     for name, cls in PROBES.items() if modality in (None, cls.modality))


def _predictors() -> str:
    from hubselect.rank.predictors import PREDICTORS
    return ", ".join(PREDICTORS)


def _backends() -> str:
    from hubselect.sweep import BACKENDS
    return " or ".join(BACKENDS)


def _studies() -> str:
    from hubselect.evaluate.protocol import STUDIES
    return ", ".join(STUDIES)


CHOICES: dict[str, Callable[[], str]] = {"probes": _probes, "image_probes": functools.partial(_probes, "image"),
                                         "predictors": _predictors, "backends": _backends, "studies": _studies}


def probe_option(purpose: str, choices: str = "probes"):
    """``--probe``: one of the registered probes; None means the zoo's probe, else the default one."""
    return typer.Option(None, "--probe", help=f"{purpose}: {{{choices}}} (default: the zoo's probe, "
                                              f"else {DEFAULT_PROBE}).")


class RegistryCommand(TyperCommand):
    """A command whose help names registry choices (``{probes}``, ``{predictors}``...): worded on first use."""

    _worded = False

    def get_params(self, ctx):
        if not self._worded:
            for param in self.params:
                for name, words in CHOICES.items():
                    if param.help and f"{{{name}}}" in param.help:
                        param.help = param.help.replace(f"{{{name}}}", words())
            self._worded = True
        return super().get_params(ctx)


# -- the training options of `finetune` and `sweep` ------------------------------------------------------------
# Their names, types and help are hubselect.finetune.settings.TRAINING_SETTINGS; the defaults are FinetuneConfig's
# own, read by TrainingCommand.
# FinetuneConfig.rank is the LoRA rank: on the command line --lora-rank (no two things called "rank"),
# with the old --rank kept as a hidden alias.
TRAINING_FLAGS = {"rank": "--lora-rank"}
RANK_ALIAS = "rank_alias"
CONTEXT = "training_context"


def _flag(field: str) -> str:
    return TRAINING_FLAGS.get(field, f"--{field.replace('_', '-')}")


def _parameter_name(field: str) -> str:
    return _flag(field).lstrip("-").replace("-", "_")


def training_options(*fields: str, help_for: dict[str, str] | None = None) -> Callable:
    """Give a command FinetuneConfig's options ``fields``, in place of its parameter ``training``.

    The command receives them as one dict ``training`` keyed by FinetuneConfig's field names; ``help_for``
    words an option for this command. Register the command with ``cls=TrainingCommand`` (the defaults).
    """
    def decorate(command: Callable) -> Callable:
        signature = inspect.signature(command)
        params = list(signature.parameters.values())
        at = [p.name for p in params].index("training")
        added = []
        for field in fields:
            kind, text = TRAINING_SETTINGS[field]
            # None until TrainingCommand reads FinetuneConfig's default (also what makes a bool option a flag)
            option = typer.Option(None, _flag(field), help=(help_for or {}).get(field, text), show_default=True)
            added.append(inspect.Parameter(_parameter_name(field), inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           default=option, annotation=kind))
        if "rank" in fields:
            alias = typer.Option(None, "--rank", hidden=True, help="Old name of --lora-rank.")
            added.append(inspect.Parameter(RANK_ALIAS, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                           default=alias, annotation=Optional[int]))
            # the command's context, to tell an explicit --lora-rank from its default
            added.append(inspect.Parameter(CONTEXT, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                           annotation=typer.Context))

        @functools.wraps(command)
        def run(**kwargs):
            training = {field: kwargs.pop(_parameter_name(field)) for field in fields}
            alias = kwargs.pop(RANK_ALIAS, None)
            ctx = kwargs.pop(CONTEXT, None)
            if alias is not None:
                given = ctx.get_parameter_source(_parameter_name("rank")) if ctx is not None else None
                if getattr(given, "name", None) == "COMMANDLINE":
                    raise UserError("--rank is the old name of --lora-rank: give only one of them")
                training["rank"] = alias
            return command(training=training, **kwargs)

        run.__signature__ = signature.replace(parameters=params[:at] + added + params[at + 1:])
        return run
    return decorate


class TrainingCommand(RegistryCommand):
    """A command with :func:`training_options`: their defaults are FinetuneConfig's, read on first use."""

    _defaults_read = False

    def get_params(self, ctx):
        if not self._defaults_read:
            from hubselect.finetune.trainer import FinetuneConfig

            defaults = {_parameter_name(f.name): f.default for f in dataclasses.fields(FinetuneConfig)
                        if f.name in TRAINING_SETTINGS}
            for param in self.params:
                if param.name in defaults:
                    param.default = defaults[param.name]
            self._defaults_read = True
        return super().get_params(ctx)
