#!/usr/bin/env bash
# Install everything the opto_nb test suite needs on a fresh Debian machine with Python 3.11:
# the package (editable) with its dev extra and the CPU build of torch, Debian's Chromium for the browser tests and
# Debian's KaTeX, which the docs site ships so that its formulas render offline.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
if [ ! -x /usr/bin/chromium ] || [ ! -e /usr/share/javascript/katex/katex.min.js ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium libjs-katex >/dev/null
fi
python -m pip install -q torch==2.13.0 -e ".[dev]"
python - <<'PY'
import torch; assert torch.__version__.startswith("2.13.0") and "+cpu" in torch.__version__ or not torch.cuda.is_available(), torch.__version__
print("test dependencies ready: torch", torch.__version__)
PY
# the versions the suite runs with go into the log, so that a failure can be diagnosed from it alone
echo "installed packages (python -m pip freeze):"
python -m pip freeze --exclude-editable | sed 's/^/  /'
