"""Redraw every plot of a run from its saved files: ``python scripts/plot_metrics.py RUN_DIR``
(the same as ``animegan-plot RUN_DIR``)."""

import sys

from animegan_ignite.plot import main

if __name__ == "__main__":
    sys.exit(main())
