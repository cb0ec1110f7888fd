"""Redraw every plot of a run from its saved files: ``python scripts/plot_metrics.py RUN_DIR``.

The same code runs inside the trainer at every epoch end (``animegan_ignite.plots``).
"""

import sys

from animegan_ignite.plots import main

if __name__ == "__main__":
    sys.exit(main())
