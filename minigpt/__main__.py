"""`python -m minigpt ...`: the same as the `minigpt` command (see minigpt/cli/)."""

import sys

from minigpt.cli import main

sys.exit(main())
