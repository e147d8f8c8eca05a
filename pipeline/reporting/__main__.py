"""`python -m pipeline.reporting SWEEP_DIR`: the sweep report over a finished or partly finished sweep folder."""

import sys

from pipeline.reporting.sweep import main

sys.exit(main())
