"""Your own project beside raft: prompts from your file, a reward that is a plain function, configs in your folder."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from raft.cli.starter import write_starter
from raft.data.prompt_table import PromptTable
from raft.rewards.function import FunctionReward, load_function

ROWS = [{"prompt": f"Question {i}?", "answer": str(i), "level": i % 3} for i in range(10)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_prompts_and_their_extra_columns_from_jsonl_csv_and_parquet(tmp_path):
    import datasets

    jsonl = _jsonl(tmp_path / "p.jsonl", ROWS)
    datasets.Dataset.from_list(ROWS).to_csv(str(tmp_path / "p.csv"), index=False)
    datasets.Dataset.from_list(ROWS).to_parquet(str(tmp_path / "p.parquet"))
    for path in (jsonl, tmp_path / "p.csv", tmp_path / "p.parquet"):
        data = PromptTable(str(path), n_test=3, seed=1)
        train, test = data.prompts("train"), data.prompts("test")
        assert len(train) == 7 and len(test) == 3 and not set(train) & set(test)
        assert sorted(train + test) == sorted(r["prompt"] for r in ROWS)
        assert str(data.extras("Question 4?")["answer"]) == "4" and data.extras("Question 4?")["level"] == 1


def test_the_test_split_never_shares_a_prompt_with_training(tmp_path):
    rows = ROWS + [dict(ROWS[0])] * 3  # the same prompt (and columns) four times
    data = PromptTable(str(_jsonl(tmp_path / "p.jsonl", rows)), n_test=5, seed=0)
    assert not set(data.prompts("train")) & set(data.prompts("test"))
    test_file = _jsonl(tmp_path / "t.jsonl", [ROWS[1], {"prompt": "Held out?", "answer": "x", "level": 0}])
    own = PromptTable(str(_jsonl(tmp_path / "p.jsonl", ROWS)), test_path=str(test_file))
    assert own.prompts("test") == ["Held out?"] and len(own.prompts("train")) == 10  # train keeps "Question 1?"


def test_chat_messages_and_clear_errors(tmp_path):
    chat = [{"messages": [{"role": "user", "content": "Hello there?"}], "topic": "greeting"}]
    chat += [{"messages": [{"role": "user", "content": f"Ask {i}"}], "topic": "x"} for i in range(3)]
    data = PromptTable(str(_jsonl(tmp_path / "chat.jsonl", chat)), n_test=1)
    assert "Hello there?" in data.prompts("train") + data.prompts("test")
    assert data.extras("Hello there?") == {"topic": "greeting"}
    with pytest.raises(ValueError, match="has no 'prompt' column"):
        PromptTable(str(_jsonl(tmp_path / "bad.jsonl", [{"question": "q"}] * 3)), n_test=1)
    system = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]}] * 3
    with pytest.raises(ValueError, match="one user turn"):
        PromptTable(str(_jsonl(tmp_path / "sys.jsonl", system)), n_test=1)
    clash = [{"prompt": "Same?", "answer": "1"}, {"prompt": "Same?", "answer": "2"}, {"prompt": "Other?"}]
    with pytest.raises(ValueError, match="appears twice with different columns"):
        PromptTable(str(_jsonl(tmp_path / "clash.jsonl", clash)), n_test=1)
    with pytest.raises(ValueError, match="data.path='missing.jsonl' is neither a file nor a hub dataset"):
        PromptTable("missing.jsonl")


def test_a_function_reward_gets_the_rows_extra_columns(tmp_path):
    module = tmp_path / "grader.py"
    module.write_text(
        "def score(prompts, completions, answer, level, **_):\n"
        "    return [float(c.strip() == a) + 0.1 * lv for c, a, lv in zip(completions, answer, level)]\n"
        "def broken(prompts, completions, **_):\n"
        "    return [1 / 0 for _ in completions]\n"
    )
    data = PromptTable(str(_jsonl(tmp_path / "p.jsonl", ROWS)), n_test=2)
    reward = FunctionReward(f"{module}:score", data=data)
    assert reward(["Question 4?", "Question 5?"], [" 4", "6"]) == pytest.approx([1.1, 0.2])
    with pytest.raises(ZeroDivisionError):  # the user's own error, as raised, with its traceback
        FunctionReward(f"{module}:broken", data=data)(["Question 4?"], ["x"])
    sys.path.insert(0, str(tmp_path))
    try:
        assert load_function("grader:score").__name__ == "score"  # module:function, importable
    finally:
        sys.path.remove(str(tmp_path))
    with pytest.raises(ValueError, match="must be 'module:function'"):
        load_function("grader.score")
    with pytest.raises(ValueError, match="has no function 'nothing'"):
        load_function(f"{module}:nothing")


def test_your_configs_layer_over_raft_s_from_your_folder(tmp_path):
    (tmp_path / "conf" / "reward").mkdir(parents=True)
    (tmp_path / "conf" / "reward" / "mine.yaml").write_text(
        "_target_: raft.rewards.pattern.PatternCount\npattern: '!'\n"
    )
    shown = subprocess.run(
        [sys.executable, "-m", "raft", "--config-dir", "conf", "reward=mine", "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "raft.rewards.pattern.PatternCount" in shown and "pattern: '!'" in shown
    assert "raft.selection.selectors.LocalRanking" in shown  # raft's own groups are still there


@pytest.mark.slow
def test_raft_init_then_a_run_from_the_users_own_folder(tmp_path):
    assert {p.name for p in write_starter(tmp_path)} == {"prompts.jsonl", "my_rewards.py", "mine.yaml"}
    assert write_starter(tmp_path) == []  # never overwrites
    small = ["model=tiny", "task.iterations=1", "task.batch_size=4", "sampler.K=2", "sampler.max_new_tokens=8"]
    subprocess.run(
        [sys.executable, "-m", "raft", "--config-dir", "conf", "experiment=mine", *small],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    (run,) = (tmp_path / "outputs" / "runs" / "mine").iterdir()
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert {"before", "after"} <= set(evaluation)
    scored = [json.loads(line) for line in (run / "iter_000" / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == 8 and all(0.0 <= s["reward"] <= 1.3 for s in scored)
