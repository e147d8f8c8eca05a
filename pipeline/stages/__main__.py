"""`python -m pipeline.stages` prints the stage names (the Makefile's targets)."""

from pipeline.stages import STAGES

print(" ".join(STAGES))
