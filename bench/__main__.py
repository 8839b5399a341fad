"""`python -m bench [--quick]`: the whole benchmark (see bench/run.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.run import main  # noqa: E402

if __name__ == "__main__":
    main()
