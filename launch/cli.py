"""The `launch` command line: parses options, calls the library, prints. Nothing else prints."""

from __future__ import annotations

import click

from bake.clikit import exits, verbosity_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
def cli() -> None:
    """Launch fabperf benchmark environments from the baked images.

    An environment file (environments/*.yaml) describes organisations, orderers, Caliper
    workers, the monitor and where each host runs.
    """


main = exits(cli)
