"""Puts the repository's scripts/ folder on `sys.path`, so the tests here import the benchmarks
(scripts/benchmarks/) as `benchmarks`, the name `python scripts/bench.py` gives them."""

import os
import sys

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)
