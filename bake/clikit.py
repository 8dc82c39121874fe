"""What both command-line programs share: verbosity, output format, exit codes.

Only the CLI modules print. Library code returns values and raises FabperfError.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from bake.errors import FabperfError, InputError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_EXTERNAL = 1
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130


def setup_logging(verbose: int, quiet: int) -> None:
    """-v shows every command run, -q hides progress; default shows progress lines."""
    level = logging.INFO - 10 * verbose + 10 * quiet
    logging.basicConfig(
        level=max(level, logging.DEBUG),
        format="%(message)s" if verbose == 0 else "%(levelname).1s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def _verbosity(ctx: click.Context, param: click.Parameter, value: int) -> None:
    # -v/-q may be given to the group and to the command; the counts add up.
    meta = ctx.find_root().meta
    meta[param.name] = meta.get(param.name, 0) + value
    setup_logging(meta.get("verbose", 0), meta.get("quiet", 0))


def verbosity_options(f: F) -> F:
    """Add -v/-q to a click command or group (use on the group and on every command)."""
    f = click.option(
        "-q", "--quiet", count=True, expose_value=False, callback=_verbosity,
        help="Less output (repeatable).",
    )(f)
    f = click.option(
        "-v", "--verbose", count=True, expose_value=False, callback=_verbosity,
        help="More output; -v logs every command run.",
    )(f)
    return f


def output_option(f: F) -> F:
    """Add --output text|json."""
    return click.option(
        "--output",
        "output",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="json prints one machine-readable document on stdout.",
    )(f)


def emit_json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True, default=str))


def progress(message: str) -> None:
    """A progress line on stderr (hidden by -q)."""
    logging.getLogger("fabperf").info(message)


def run_main(group: click.Group, argv: list[str] | None = None) -> int:
    """Run a click group and map errors to the documented exit codes."""
    try:
        group.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return EXIT_INPUT
    except FabperfError as exc:
        kind = "error" if isinstance(exc, InputError) else "failed"
        click.echo(f"{kind}: {exc}", err=True)
        return exc.exit_code
    return EXIT_OK


def exits(group: click.Group) -> Callable[[], None]:
    """The console-script entry point for a group."""

    @functools.wraps(run_main)
    def main() -> None:
        sys.exit(run_main(group))

    return main
