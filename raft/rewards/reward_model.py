"""A reward model trained by `task=reward_model`, scored exactly as it was trained, minus a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from raft.data.preference_pairs import ASSISTANT
from raft.infra.devices import check_dtype, pick_device
from raft.rewards.base import Reward
from raft.rewards.model_files import META_FILE, format_texts, load_reward_model, score_texts


def as_dialogue(prompt: str) -> str:
    """A plain user request (chat-style data) in the HH-RLHF layout that reward models are trained on."""
    return prompt if ASSISTANT in prompt else f"\n\nHuman: {prompt.strip()}{ASSISTANT}"


class TrainedRewardModel(Reward):
    """Reward = r(prompt, response) - baseline. The baseline re-centres the scale (paper appendix A.1);
    RAFT's ranking ignores it, PPO's stability does not."""

    def __init__(
        self,
        path: str,
        batch_size: int = 16,
        max_length: int | None = None,
        baseline: float = 0.0,
        dtype: str = "float32",
        device: str | None = None,
        wrap_plain_prompts: bool = True,
    ):
        folder = Path(path).expanduser()
        if not (folder / META_FILE).is_file():
            raise ValueError(
                f"reward.path={path!r} is not a reward model saved by task=reward_model "
                f"(no {META_FILE}); train one first"
            )
        if batch_size < 1:
            raise ValueError(f"reward.batch_size must be >= 1, got {batch_size}")
        if max_length is not None and max_length < 2:
            raise ValueError(f"reward.max_length must be >= 2 or null, got {max_length}")
        check_dtype(dtype, "reward.dtype")
        self.path, self.batch_size, self.max_length = folder, batch_size, max_length
        self.baseline, self.dtype, self.device = float(baseline), dtype, device
        self.wrap_plain_prompts = wrap_plain_prompts
        self._model = self._tokenizer = self._meta = None

    def score_batch(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if self._model is None:
            model, self._tokenizer, self._meta = load_reward_model(self.path, self.dtype)
            self._model = model.to(pick_device(self.device))
        if self.wrap_plain_prompts:
            prompts = [as_dialogue(p) for p in prompts]
        texts = format_texts(prompts, responses, self._meta["text_template"])
        max_length = self.max_length or self._meta["max_length"]
        scores = score_texts(self._model, self._tokenizer, texts, self.batch_size, max_length)
        return [s - self.baseline for s in scores]

    def close(self) -> None:
        self._model = self._tokenizer = self._meta = None
