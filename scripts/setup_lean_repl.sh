#!/usr/bin/env bash
# Prepare real Lean for the lean_repl backend: a Lean project with Mathlib, and the Lean REPL,
# at one consistent set of pinned versions.
#
#   scripts/setup_lean_repl.sh [LEAN_DIR]        (default: ~/.cache/dmvr/lean; `make lean-setup`)
#
# Result:
#   LEAN_DIR/project   a Lake project requiring Mathlib (its prebuilt .olean cache is downloaded)
#   LEAN_DIR/repl      leanprover-community/repl, built: LEAN_DIR/repl/.lake/build/bin/repl
# which is where the backend looks by default (lean_env/lean_repl/setup.py).
#
# Needs: internet, git, curl, and elan (https://github.com/leanprover/elan). Expect 10-30 minutes
# (mostly downloading the Mathlib cache) and about 6-8 GB of disk.
#
# UNTESTED HERE: the machine this was written on has no Lean and no internet. The versions below
# follow the convention that Lean, Mathlib and the REPL all tag each Lean release as vX.Y.Z; if a
# tag is missing, pick the newest release that all three have and change the three lines together.
set -euo pipefail

# v4.19.0's JSON parser reads an escaped surrogate pair (\ud835\udd5c) as two NULs (fixed in v4.20);
# the lean_repl backend therefore sends UTF-8, which every version reads right, and the pin can stay.
LEAN_VERSION="v4.19.0"     # Lean toolchain: leanprover/lean4:$LEAN_VERSION
MATHLIB_TAG="v4.19.0"      # mathlib4 git tag for that toolchain
REPL_TAG="v4.19.0"         # leanprover-community/repl git tag for that toolchain

LEAN_DIR="${1:-${HOME}/.cache/dmvr/lean}"
PROJECT="${LEAN_DIR}/project"
REPL="${LEAN_DIR}/repl"

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup_lean_repl: '$1' is required: $2" >&2; exit 1; }; }
need git "install git"
need curl "install curl"
need elan "install elan: curl https://raw.githubusercontent.com/leanprover/elan/master/elan-init.sh -sSf | sh"

mkdir -p "${LEAN_DIR}"
elan toolchain install "leanprover/lean4:${LEAN_VERSION}"

# The REPL, built with the same Lean as the project (a REPL must match its project's toolchain).
if [ ! -d "${REPL}/.git" ]; then
  git clone --depth 1 --branch "${REPL_TAG}" https://github.com/leanprover-community/repl "${REPL}"
fi
(cd "${REPL}" && echo "leanprover/lean4:${LEAN_VERSION}" > lean-toolchain && lake build)

# The project: Mathlib as its only dependency.
mkdir -p "${PROJECT}"
cd "${PROJECT}"
echo "leanprover/lean4:${LEAN_VERSION}" > lean-toolchain
cat > lakefile.toml <<TOML
name = "dmvr_lean"
defaultTargets = ["DmvrLean"]

[[require]]
name = "mathlib"
git = "https://github.com/leanprover-community/mathlib4"
rev = "${MATHLIB_TAG}"

[[lean_lib]]
name = "DmvrLean"
TOML
echo "import Mathlib" > DmvrLean.lean
lake update                 # resolves Mathlib and writes lake-manifest.json
lake exe cache get          # prebuilt Mathlib .olean files instead of hours of building
lake build                  # checks that `import Mathlib` works

# A smoke test of the REPL in the project: one core-Lean proof and its axioms.
printf '{"cmd": "theorem smoke (p : Prop) (h : p) : p := h\\n\\n#print axioms smoke"}\n\n' \
  | lake env "${REPL}/.lake/build/bin/repl"

cat <<MSG
Done. Use it with:
  python -m lean_env verify --backend lean_repl --lean-project ${PROJECT} IN.jsonl OUT.jsonl
  python -m pipeline verifier=lean_repl verifier.lean_repl.project=${PROJECT}
(or export DMVR_LEAN_PROJECT=${PROJECT}).
MSG
