"""The bias of the self-normalised α-DPG estimator (with and without the leave-one-out baseline) on
the enumerable toy problem of tests/test_objectives.py, by exact enumeration over k samples.

    python scripts/self_normalised_bias.py [--ks 2,4,8,16]

For α ∈ {0, 0.5, 1} and each k, prints: the relative bias ‖E[ĝ] − g∞‖/‖g∞‖ against the k → ∞ limit
g∞ = (1−α)∇D_α / S_α, the ratio ‖E[ĝ]‖/‖g∞‖, and the cosine between E[ĝ] and the exact (1−α)∇D_α.
docs/objectives.md quotes its output.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_objectives import exact_scaled_gradient, exact_self_normalised_expectation, self_normalised_limit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ks", default="2,4,8,16")
    ks = [int(k) for k in ap.parse_args().ks.split(",")]
    print("| α | k | baseline | relative bias vs g∞ | ‖E ĝ‖/‖g∞‖ | cos(E ĝ, (1−α)∇D_α) |\n|---|---|---|---|---|---|")
    for alpha in (0.0, 0.5, 1.0):
        limit, exact = self_normalised_limit(alpha), exact_scaled_gradient(alpha).numpy()
        for k in ks:
            for base in ("none", "leave_one_out"):
                e = exact_self_normalised_expectation(alpha, k, base)
                print(f"| {alpha:g} | {k} | {base} | {np.linalg.norm(e - limit) / np.linalg.norm(limit):.3f} | "
                      f"{np.linalg.norm(e) / np.linalg.norm(limit):.3f} | "
                      f"{e @ exact / np.linalg.norm(e) / np.linalg.norm(exact):.3f} |")


if __name__ == "__main__":
    main()
