#!/bin/bash
# One-time set-up on a cluster's login node, from a clone of the repository: uv (the README's install) and the
# locked environment in .venv, which every job then uses. Compute nodes need no network afterwards.
#   git clone <this repository> CleanRLHF && cd CleanRLHF && slurm/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --user --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi
uv sync --frozen --compile-bytecode  # once: no job then compiles the modules it imports (PYTHONDONTWRITEBYTECODE)
mkdir -p slurm/logs
MUJOCO_GL=egl uv run --frozen python -c "import gymnasium as gym; gym.make('Hopper-v5').reset(seed=0); print('environment ok')"
command -v sbatch >/dev/null && echo "sbatch found: submit with slurm/submit.sh" || echo "no sbatch on this machine"
