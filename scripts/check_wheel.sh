#!/usr/bin/env bash
# A user's first contact, from the built wheel rather than the clone: raft installed non-editable into a fresh venv
# (which sees this machine's packages, so nothing is downloaded again; raft itself comes only from the wheel), run
# from an empty folder outside the repository: --help, the composed config, the quick start (the embedded
# default), and a project of one's own (raft init: a JSONL prompt file and a reward function).
#   scripts/check_wheel.sh [--quick]    (--quick: the quick start at tiny-model size)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
pip wheel --no-deps --quiet -w "$work/dist" "$repo"
python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --no-deps "$work"/dist/raft_align-*.whl
raft="$work/venv/bin/raft"
mkdir "$work/user" && cd "$work/user"
"$work/venv/bin/python" -c "import raft, sys; sys.exit(not raft.__file__.startswith('$work/venv/'))"
# whole outputs first: `grep -q` stops reading at its match, and the writer then dies of a broken pipe (pipefail)
"$raft" --help > "$work/help.txt"
grep -q "experiment: " "$work/help.txt"
"$raft" --cfg job > "$work/job.yaml"
grep -q "_target_: raft.tasks.raft.RaftTask" "$work/job.yaml"
small=(model=tiny task.iterations=1 task.batch_size=4 sampler.K=2 sampler.max_new_tokens=8)
if [[ "${1:-}" == "--quick" ]]; then
  "$raft" "${small[@]}" evaluator.n_prompts=4
else
  "$raft"   # the README's quick start: RAFT on SmolLM2 with VADER, the embedded default
fi
test -f outputs/runs/default/*/evaluation.json
"$raft" init my_project
cd my_project
"$raft" --config-dir conf experiment=mine "${small[@]}"
test -f outputs/runs/mine/*/evaluation.json
echo "check_wheel: the wheel's raft ran from an empty folder ($work)"
