"""Final answers of math-style responses: the format a prompt asks for, its extraction, and answer equality.

A prompt asks for its final answer in one fixed format; the exact-match reward extracts it in that format
only, so a response that does not follow the format scores 0 even when the right number is in it.
"""

from __future__ import annotations

import re
from fractions import Fraction

INSTRUCTIONS = {
    "answer_line": 'Think step by step, then write the final answer on the last line as "Answer: <answer>".',
    "boxed": "Think step by step, then put the final answer in \\boxed{}.",
    "hashes": 'Let\'s think step by step and output the final answer after "####".',  # GSM8K's own marker
    "last_number": "Think step by step and end with the final answer.",
}
FORMATS = tuple(INSTRUCTIONS)
ANSWER_LINE = re.compile(r"answer\s*(?:is)?\s*[:=]\s*(.+)", re.IGNORECASE)
HASHES = re.compile(r"####\s*(.+)")
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def check_format(name: str, field: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"{field} must be one of {FORMATS}, got {name!r}")
    return name


def instruction(answer_format: str) -> str:
    """The sentence a prompt ends with, so the model knows where its answer will be read."""
    return INSTRUCTIONS[answer_format]


def extract_answer(response: str, answer_format: str) -> str | None:
    """The final answer in `answer_format`, or None when the response does not give one that way."""
    if answer_format == "answer_line":
        found = ANSWER_LINE.findall(response)
        return (_clean(found[-1]) or None) if found else None
    if answer_format == "hashes":
        found = HASHES.findall(response)
        return (_clean(found[-1]) or None) if found else None
    if answer_format == "boxed":
        return last_boxed(response)
    numbers = NUMBER.findall(response)
    return numbers[-1] if numbers else None


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}), braces balanced; None without one."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, begin = 1, i
    while i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip()
        i += 1
    return None  # unclosed: the model stopped mid-answer


def _clean(answer: str) -> str:
    """One line, without markdown emphasis, a closing full stop, or a trailing unit sentence."""
    answer = answer.strip().strip("*_`").strip()
    boxed = last_boxed(answer)
    answer = boxed if boxed is not None else answer
    return answer.removeprefix("$").removesuffix("$").rstrip(".").strip()


def number(text: str) -> Fraction | None:
    """An integer, decimal or fraction written plainly (thousands commas allowed), else None."""
    text = text.strip().replace(",", "").removeprefix("$").removesuffix("$").strip()
    match = re.fullmatch(r"(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?", text)
    frac = re.fullmatch(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}", text)
    try:
        if match:
            value = Fraction(match.group(1))
            return value / int(match.group(2)) if match.group(2) else value
        if frac:
            value = Fraction(int(frac.group(2)), int(frac.group(3)))
            return -value if frac.group(1) else value
    except ZeroDivisionError:
        return None
    return None


def normalise(answer: str) -> str:
    """A LaTeX answer with the spelling differences that do not change it removed (MATH-style answers)."""
    text = answer.strip().removeprefix("$").removesuffix("$")
    text = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", text)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("dfrac", "frac")):
        text = text.replace(old, new)
    text = text.replace("tfrac", "frac").replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "")
    text = re.sub(r"\s+", "", text).rstrip(".")
    return text


def same_answer(given: str, reference: str) -> bool:
    """Equal as numbers when both are numbers, else equal after `normalise`."""
    a, b = number(given), number(reference)
    if a is not None and b is not None:
        return a == b
    return normalise(given) == normalise(reference)
