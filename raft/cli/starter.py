"""`raft init [FOLDER]`: a starter project of your own beside raft, not inside it.

It writes a prompt file with an extra column, a reward function that reads that column, and an experiment
preset that picks them; run it from that folder with `raft --config-dir conf experiment=mine`. Hydra layers the
folder's `conf/` over raft's own configs, so any group can get options of your own the same way
(`conf/reward/<name>.yaml`, `conf/data/<name>.yaml`, ...). Existing files are never overwritten.
"""

from __future__ import annotations

import json
from pathlib import Path

PROMPTS = [
    ("Describe your favourite season in two sentences.", "warm"),
    ("Suggest a name for a friendly robot.", "bright"),
    ("Write a short greeting for a new neighbour.", "welcome"),
    ("Give one tip for a calm morning.", "quiet"),
    ("Describe the sea to someone who has never seen it.", "blue"),
    ("Recommend a book for a rainy afternoon.", "cozy"),
    ("Say something kind about teachers.", "patient"),
    ("Describe a perfect picnic.", "sunny"),
    ("Write one line of advice for a first job.", "curious"),
    ("Describe the smell of fresh bread.", "warm"),
    ("Suggest a game for two friends.", "fun"),
    ("Describe a city at night.", "bright"),
]

REWARD = '''"""My reward: called as score(prompts=, completions=, **columns), one number per completion.

`columns` are the extra columns of prompts.jsonl for each prompt (here: `keyword`), as TRL passes dataset
columns to its reward functions.
"""


def score(prompts, completions, keyword, **columns):
    """1 for a completion that uses its prompt's keyword, plus a little for length (up to 30 words)."""
    return [float(k.lower() in c.lower()) + 0.01 * min(len(c.split()), 30) for c, k in zip(completions, keyword)]
'''

EXPERIMENT = """# @package _global_
# My experiment: raft's defaults with my prompts and my reward. Run from this folder:
#   raft --config-dir conf experiment=mine
defaults:
  - override /data: prompts
  - override /reward: function

name: mine
data:
  path: prompts.jsonl
  n_test: 4
reward:
  fn: my_rewards:score
task:
  iterations: 2
  batch_size: 8
"""


def write_starter(folder: Path) -> list[Path]:
    """Write the starter files into `folder`; the paths written (existing ones are left as they are)."""
    folder = Path(folder)
    files = {
        folder / "prompts.jsonl": "".join(json.dumps({"prompt": p, "keyword": k}) + "\n" for p, k in PROMPTS),
        folder / "my_rewards.py": REWARD,
        folder / "conf" / "experiment" / "mine.yaml": EXPERIMENT,
    }
    written = []
    for path, text in files.items():
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path.cwd()
    written = write_starter(folder)
    for path in written:
        print(f"wrote {path}")
    print(f"next: cd {folder} && raft --config-dir conf experiment=mine")
    return 0
