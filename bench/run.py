"""Entry point of `make bench`: `.venv/bin/python bench/run.py [--quick] [--no-peer]`.

Python puts this file's folder first on sys.path, which makes `gatehouse_bench` importable
without installing it.
"""

from __future__ import annotations

import sys

from gatehouse_bench.main import main

if __name__ == "__main__":
    sys.exit(main())
