"""`python -m berth_server` is `berth-server`."""

import sys

from berth_server import cli

sys.exit(cli.main())
