"""The `bake` command line: parses options, calls the library, prints. Nothing else prints."""

from __future__ import annotations

import click

from bake.clikit import exits, verbosity_options


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@verbosity_options
def cli() -> None:
    """Bake fabperf's golden VM images (fabric-node, caliper-worker, monitor) with Packer.

    Providers: qemu (default, local, no account), aws, openstack.
    """


main = exits(cli)
