"""`python -m bake.goss validate ...`: what the Packer templates run on the build host
(bake.render; the golden templates pin that command line). An entry point at the level of
bake.cli, in a module of its own, so the library (bake.goss) never imports the CLI."""

import sys

from bake.cli import goss_cli
from fabkit.clikit import run_main

sys.exit(run_main(goss_cli))
