"""Code domain: HumanEval problems and a few built-in tasks in the same format, as Problem dicts.

A problem dict: `question` = the prompt (imports, signature, docstring), `answer` = the reference body
(the canonical solution), `domain` = "code", `meta` = {"test": "def check(candidate): ...", "entry_point": name}.
The steps of a solution are its lines (`annotators.verifiers.code.code_lines`). The built-in tasks let tests and
the demo run without `../shared/data`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

__all__ = ["HUMANEVAL_PATH", "builtin_tasks", "humaneval_row_to_problem", "load_humaneval"]

HUMANEVAL_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "humaneval" / "HumanEval.jsonl.gz"


def humaneval_row_to_problem(row: dict[str, Any], source: str = "humaneval") -> dict[str, Any]:
    """One HumanEval row (task_id, prompt, canonical_solution, test, entry_point) as a Problem dict."""
    return {
        "problem_id": row["task_id"],
        "question": row["prompt"],
        "answer": row["canonical_solution"],
        "domain": "code",
        "source": source,
        "meta": {"test": row["test"], "entry_point": row["entry_point"]},
    }


def load_humaneval(path: str | Path | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """HumanEval (164 tasks) from `../shared/data/humaneval/HumanEval.jsonl.gz` or `path` (.jsonl or .jsonl.gz)."""
    path = Path(path) if path is not None else HUMANEVAL_PATH
    opener = gzip.open if path.suffix == ".gz" else open
    problems = []
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                problems.append(humaneval_row_to_problem(json.loads(line)))
                if limit is not None and len(problems) >= limit:
                    break
    return problems


_BUILTIN = [
    {
        "task_id": "builtin/sum_of_squares",
        "entry_point": "sum_of_squares",
        "prompt": (
            "def sum_of_squares(numbers: list[int]) -> int:\n"
            '    """Return the sum of the squares of the positive numbers in the list.\n'
            "    >>> sum_of_squares([1, -2, 3])\n"
            "    10\n"
            '    """\n'
        ),
        "canonical_solution": (
            "    total = 0\n"
            "    for value in numbers:\n"
            "        if value > 0:\n"
            "            total += value * value\n"
            "    return total\n"
        ),
        "test": (
            "def check(candidate):\n"
            "    assert candidate([1, -2, 3]) == 10\n"
            "    assert candidate([]) == 0\n"
            "    assert candidate([0, 0, 2]) == 4\n"
            "    assert candidate([-1, -5]) == 0\n"
            "    assert candidate([1, 1, 1, 1]) == 4\n"
        ),
    },
    {
        "task_id": "builtin/is_palindrome",
        "entry_point": "is_palindrome",
        "prompt": (
            "def is_palindrome(text: str) -> bool:\n"
            '    """Whether text reads the same backwards, ignoring case and non-letters.\n'
            "    >>> is_palindrome('A man, a plan, a canal: Panama')\n"
            "    True\n"
            '    """\n'
        ),
        "canonical_solution": (
            "    letters = [c.lower() for c in text if c.isalpha()]\n"
            "    left, right = 0, len(letters) - 1\n"
            "    while left < right:\n"
            "        if letters[left] != letters[right]:\n"
            "            return False\n"
            "        left += 1\n"
            "        right -= 1\n"
            "    return True\n"
        ),
        "test": (
            "def check(candidate):\n"
            "    assert candidate('A man, a plan, a canal: Panama') is True\n"
            "    assert candidate('racecar') is True\n"
            "    assert candidate('ab') is False\n"
            "    assert candidate('abca') is False\n"
            "    assert candidate('') is True\n"
            "    assert candidate('Noon!') is True\n"
        ),
    },
    {
        "task_id": "builtin/running_max",
        "entry_point": "running_max",
        "prompt": (
            "def running_max(values: list[int]) -> list[int]:\n"
            '    """The maximum of each prefix of values.\n'
            "    >>> running_max([1, 3, 2, 5])\n"
            "    [1, 3, 3, 5]\n"
            '    """\n'
        ),
        "canonical_solution": (
            "    result = []\n"
            "    best = None\n"
            "    for value in values:\n"
            "        if best is None or value > best:\n"
            "            best = value\n"
            "        result.append(best)\n"
            "    return result\n"
        ),
        "test": (
            "def check(candidate):\n"
            "    assert candidate([1, 3, 2, 5]) == [1, 3, 3, 5]\n"
            "    assert candidate([]) == []\n"
            "    assert candidate([-3, -5, -1]) == [-3, -3, -1]\n"
            "    assert candidate([2, 2, 1]) == [2, 2, 2]\n"
        ),
    },
    {
        "task_id": "builtin/count_in_range",
        "entry_point": "count_in_range",
        "prompt": (
            "def count_in_range(values: list[int], low: int, high: int) -> int:\n"
            '    """How many values v satisfy low <= v < high.\n'
            "    >>> count_in_range([1, 5, 7, 10], 5, 10)\n"
            "    2\n"
            '    """\n'
        ),
        "canonical_solution": (
            "    count = 0\n"
            "    for v in values:\n"
            "        if low <= v and v < high:\n"
            "            count += 1\n"
            "    return count\n"
        ),
        "test": (
            "def check(candidate):\n"
            "    assert candidate([1, 5, 7, 10], 5, 10) == 2\n"
            "    assert candidate([], 0, 1) == 0\n"
            "    assert candidate([0, 1, 2], 0, 3) == 3\n"
            "    assert candidate([3, 3, 3], 3, 3) == 0\n"
            "    assert candidate([4, 9, 2], 2, 5) == 2\n"
        ),
    },
]


def builtin_tasks() -> list[dict[str, Any]]:
    """Four small HumanEval-format tasks embedded here (no files needed), as Problem dicts."""
    return [humaneval_row_to_problem(row, source="builtin") for row in _BUILTIN]
