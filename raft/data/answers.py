"""Final answers of math-style responses: the format a prompt asks for, its extraction, and answer equality.

A prompt asks for its final answer in one fixed format; the exact-match reward extracts it in that format
only, so a response that does not follow the format scores 0 even when the right number is in it.

Equality comes in three kinds, each for its own problems:

- `same_answer`: MATH/GSM8K-style answers, by HF's math-verify (what TRL's accuracy reward, open-r1 and verl
  use): `\\frac12` = `0.5`, `x = 5` = `5`, `\\{2,1\\}` = `\\{1,2\\}`, `(x+1)^2` = `x^2+2x+1`; "2,3" is the set {2, 3},
  never 23, while "1,000" is 1000. Two plain integers are compared exactly without it.
- `same_number`: raft's generated tasks (arithmetic), whose references are exact numbers: Fraction equality,
  no symbolic parsing, no float tolerance.
- `lm_eval_match`: lm-eval's GSM8K comparison (`extraction: strict | flexible`, with `lm_eval_extract`), so
  an accuracy is the one lm-eval reports as exact_match,strict-match / exact_match,flexible-extract.

math-verify bounds its work with SIGALRM, which only the main thread may use: `same_answer` uses it there,
and elsewhere (a Lightning or worker thread) runs without it. Answers whose size could keep sympy busy for
minutes (exponent towers, huge exponents or factorials, very long answers) never reach sympy in either case;
they are compared as normalised strings.
"""

from __future__ import annotations

import functools
import re
import threading
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

# Where the answer is read: `format` = in the prompt's answer format (above), graded by the problem set;
# `strict` / `flexible` = lm-eval's GSM8K filters (lm_eval/tasks/gsm8k/gsm8k.yaml), graded as lm-eval grades.
EXTRACTIONS = ("format", "strict", "flexible")
GSM8K_STRICT = re.compile(r"#### (\-?[0-9\.\,]+)")  # strict-match: the first "#### <number>"
GSM8K_FLEXIBLE = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # flexible-extract: the last number
LM_EVAL_IGNORE = (",", r"\$", r"(?s).*#### ", r"\.$")  # its exact_match's regexes_to_ignore (then ignore_case)

# A plain number: digits with thousands commas only in groups of three ("2,3" is not one), a decimal, ".5".
_PLAIN = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_UNIT_ANSWER = re.compile(rf"((?:\\?\$)?\s*-?(?:{_PLAIN})%?)\s+([A-Za-z][A-Za-z\s'./-]*)")
_CONNECTIVES = {"and", "or", "to", "plus", "minus", "times", "over", "of", "pi", "sqrt", "i", "e"}
TIMEOUT_S = 5  # math-verify's own default, per parse and per comparison (whole seconds: SIGALRM)
MAX_SYMBOLIC_CHARS = 1000
_TOO_BIG = re.compile(
    r"\^\s*\{?\s*[-+]?\d{7,}"  # an exponent of a million or more
    r"|\^\s*\{[^{}]*\^"  # an exponent tower: 10^{10^{10}}
    r"|\^\s*\d+\s*\^"  # 9^9^9
    r"|\d{6,}\s*!"  # the factorial of 100000 or more
    r"|\d{2000,}"  # a number of 2000 digits
)


def check_format(name: str, field: str) -> str:
    if name not in FORMATS:
        raise ValueError(f"{field} must be one of {FORMATS}, got {name!r}")
    return name


def check_extraction(name: str, field: str) -> str:
    if name not in EXTRACTIONS:
        raise ValueError(f"{field} must be one of {EXTRACTIONS}, got {name!r}")
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
    return numbers[-1].rstrip(",") if numbers else None  # "so 12, in all": 12


def lm_eval_extract(response: str, extraction: str) -> str | None:
    """lm-eval's GSM8K filters: strict, the first "#### <number>"; flexible, the last number anywhere.

    None where lm-eval's filter falls back to "[invalid]" (no match), which never equals an answer."""
    if extraction == "strict":
        found = GSM8K_STRICT.findall(response)
        return found[0].strip() if found else None
    if extraction == "flexible":
        found = GSM8K_FLEXIBLE.findall(response)
        return next(g for g in found[-1] if g).strip() if found else None
    raise ValueError(f"lm-eval's GSM8K extraction is 'strict' or 'flexible', got {extraction!r}")


def read_answer(response: str, answer_format: str, extraction: str = "format") -> str | None:
    """The answer the reward grades: in the prompt's format, or by lm-eval's strict / flexible GSM8K filter."""
    if extraction == "format":
        return extract_answer(response, answer_format)
    return lm_eval_extract(response, extraction)


def lm_eval_match(given: str, reference: str) -> bool:
    """lm-eval's GSM8K exact_match: both strings without commas, "$", up to "#### " and a final ".", any case."""

    def strip(text: str) -> str:
        for pattern in LM_EVAL_IGNORE:
            text = re.sub(pattern, "", text)
        return text.lower()

    return strip(given) == strip(reference)


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
    """One line, without markdown emphasis, a closing full stop, or a trailing unit sentence ("18 dollars")."""
    answer = answer.strip().strip("*_`").strip()
    boxed = last_boxed(answer)
    answer = boxed if boxed is not None else answer
    answer = answer.removeprefix("$").removesuffix("$").rstrip(".,").strip()
    return drop_unit(answer)


def drop_unit(answer: str) -> str:
    """A number followed by words ("18 dollars", "$12.50 per hour") is the number; anything else is kept."""
    match = _UNIT_ANSWER.fullmatch(answer.strip())
    if match is None:
        return answer
    words = set(re.split(r"[\s./-]+", match.group(2).lower())) - {""}
    if words & _CONNECTIVES or any(len(w) < 2 for w in words):  # "3 and 4", "2 x": not a unit
        return answer
    return match.group(1).strip()


def number(text: str) -> Fraction | None:
    """An integer, decimal or fraction written plainly, else None: exact, no parsing of expressions.

    Allowed around it: a "$" (or "\\$"), enclosing "$...$", a unit ("12 apples"), an assignment ("x = 5");
    thousands commas only in groups of three ("1,000"; "2,3" is no number). Fractions: "3/4",
    "\\frac{3}{4}", "\\dfrac34"."""
    text = drop_unit(text.strip()).strip()
    text = re.sub(r"^\$(.*)\$$", r"\1", text).strip()
    text = re.sub(r"^[A-Za-z]\s*=\s*", "", text)  # "x = 5"
    text = re.sub(r"^(-?)\s*\\?\$\s*", r"\1", text).strip()  # "$12", "-\$5"
    plain = rf"-?(?:{_PLAIN})"
    try:
        if match := re.fullmatch(rf"({plain})(?:\s*/\s*(-?\d+))?", text):
            value = Fraction(match.group(1).replace(",", ""))
            return value / int(match.group(2)) if match.group(2) else value
        frac = re.fullmatch(r"(-?)\\[dt]?frac(?:\{\s*(\d+)\s*\}|\s*(\d))(?:\{\s*(\d+)\s*\}|\s*(\d))", text)
        if frac:
            value = Fraction(int(frac.group(2) or frac.group(3)), int(frac.group(4) or frac.group(5)))
            return -value if frac.group(1) else value
    except ZeroDivisionError:
        return None
    return None


def same_number(given: str, reference: str) -> bool:
    """Exact equality of two plain numbers (Fraction): for generated tasks, whose references are exact."""
    a, b = number(given), number(reference)
    return a is not None and b is not None and a == b


def normalise(answer: str) -> str:
    """A LaTeX answer with the spelling differences that do not change it removed (the fallback comparison)."""
    text = answer.strip().removeprefix("$").removesuffix("$")
    text = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", text)
    for old, new in (("\\left", ""), ("\\right", ""), ("\\!", ""), ("\\,", ""), ("\\;", ""), ("dfrac", "frac")):
        text = text.replace(old, new)
    text = text.replace("tfrac", "frac").replace("^\\circ", "").replace("^{\\circ}", "").replace("\\%", "")
    text = re.sub(r"\s+", "", text).rstrip(".")
    return text


def same_answer(given: str, reference: str, timeout_s: int | None = TIMEOUT_S) -> bool:
    """Whether `given` is the answer `reference` (MATH/GSM8K style), as math-verify judges it.

    Two plain integers (and two plain numbers that are equal) are settled exactly without math-verify.
    `timeout_s` bounds math-verify's parse and comparison in the main thread; other threads cannot use its
    SIGALRM timer and run without one. Answers too big for sympy are compared as normalised strings."""
    a, b = number(given), number(reference)
    if a is not None and b is not None and (a == b or (a.denominator == 1 and b.denominator == 1)):
        return a == b
    if _too_big(given) or _too_big(reference):
        return normalise(given) == normalise(reference)
    from math_verify import verify  # lazy: sympy and the LaTeX parser take a second to import

    timeout = _timeout(timeout_s)
    gold, target = _parse(reference, timeout), _parse(given, timeout)
    if not gold or not target:
        return normalise(given) == normalise(reference)
    return verify(list(gold), list(target), timeout_seconds=timeout)


def _too_big(answer: str) -> bool:
    return len(answer) > MAX_SYMBOLIC_CHARS or _TOO_BIG.search(answer) is not None


def _timeout(timeout_s: int | None) -> int | None:
    """math-verify's timer is SIGALRM, which only the main thread may set: None (no timer) elsewhere."""
    if timeout_s is None or timeout_s <= 0 or threading.current_thread() is not threading.main_thread():
        return None
    return int(max(1, timeout_s))


@functools.lru_cache(maxsize=16384)
def _parse(answer: str, timeout: int | None) -> tuple:
    """math-verify's parse of one extracted answer, read as LaTeX math ($...$) with plain expressions as backup.

    Cached: a reference is graded against every sample of its prompt, and sympy objects are immutable."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    answer = drop_unit(answer.strip())
    text = answer if answer.startswith("$") and answer.endswith("$") and len(answer) > 1 else f"${answer}$"
    return tuple(parse(text, [LatexExtractionConfig(), ExprExtractionConfig()], parsing_timeout=timeout))
