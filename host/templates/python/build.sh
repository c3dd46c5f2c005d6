#!/usr/bin/env bash
# Builds {{name}}.wasm with componentize-py (CPython inside the component); tools.sh installs
# the pinned componentize-py once into ~/.cache/eventhost/tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
source tools.sh
bin=$(python_tools)
"$bin/componentize-py" -d wit -w plugin componentize app -o {{name}}.wasm >/dev/null
echo "built {{name}}.wasm"
