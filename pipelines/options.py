"""The click command of each entry point, built from `components.options`, and the error boundary they share.

Light on purpose (click, the standard library and `components.options`/`components.errors`): an entry-point module
builds its command from here and calls it before importing torch, transformers or mlflow, so that `--help` and a bad
argument answer at once; the command then imports its implementation (`module:function`) and runs it.
"""

import functools
import importlib
import signal
import sys

import click

from components.errors import Interrupted, XstiltsInputError
from components.options import ENTRY_POINTS, Option

CLICK_TYPES = {str: click.STRING, int: click.INT, float: click.FLOAT, bool: click.BOOL}


def entry_point(function):
    """Bad input ends in one message on stderr and exit status 2 (the run, if any, is already FAILED); a stop by
    SIGTERM or SIGINT (Ctrl-C) in one line and exit status 128 + the signal's number (143, 130), as a shell reports
    a process killed by it (the run, if any, is already KILLED: `components.tracking.phase_run`)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except XstiltsInputError as error:
            click.echo(f"xstilts: error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt as interruption:
            signum = interruption.signum if isinstance(interruption, Interrupted) else signal.SIGINT
            click.echo(f"xstilts: stopped by {signal.Signals(signum).name}; its run, if it had started one, ended "
                       "KILLED", err=True)
            sys.exit(128 + signum)

    return wrapper


def echo_run(phase: str, run_id: str) -> None:
    """`<phase> run <id>` on stdout, from the process that logged the run: the other processes of a distributed
    launch have none."""
    if run_id:
        click.echo(f"{phase} run {run_id}")


class _TaskListingOption(click.Option):
    """An option whose help ends with the task registry's names, read only when the help is shown."""

    def get_help_record(self, ctx):
        from components.tasks import TASKS

        flags, text = super().get_help_record(ctx)
        return flags, f"{text}  Tasks: {', '.join(TASKS)}."


def click_type(option: Option) -> click.ParamType:
    if option.choices:
        return click.Choice(option.choices)
    if option.minimum is not None:
        return click.IntRange(min=option.minimum) if option.type is int else click.FloatRange(min=option.minimum)
    return CLICK_TYPES[option.type]


def click_option(option: Option) -> click.Option:
    return (_TaskListingOption if option.lists_tasks else click.Option)(
        [option.flag, option.name], type=click_type(option), default=option.default,
        required=option.default is None, show_default=option.default not in (None, ""), help=option.help)


def command(entry: str, doc: str, implementation: str) -> click.Command:
    """The click command of `entry`: its options (keyword = `-P` name), `doc` (the module docstring) as its help,
    and `implementation` ("module:function", imported after parsing) called with the option values."""

    @entry_point
    def run(**options) -> None:
        check_before_loading(options)
        module, function = implementation.split(":")
        getattr(importlib.import_module(module), function)(**options)

    return click.Command(entry, callback=run, help=doc, params=[click_option(option) for option in ENTRY_POINTS[entry]])


def check_before_loading(options: dict) -> None:
    """What an entry point that trains can check before it imports torch, transformers or mlflow, so that such an
    error answers as fast as a bad argument: its model, and `max_length` against that model and the tasks it trains
    (`task`, one or a comma-separated list; none: plain text, a language adapter's). The phases check again: tuning
    trials call them directly."""
    if "max_length" not in options:
        return
    from components.model_registry import check_max_length
    from components.tasks import get_task

    specs = [get_task(name.strip()) for name in str(options.get("task", "")).split(",") if name.strip()]
    check_max_length(options["max_length"], options["model"], specs)
