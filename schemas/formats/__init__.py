"""Converters between labelled-path rows (`schemas.tables.PATHS`) and the formats PRM trainers read.

Pure functions: no I/O, no Beam, no model. Exports follow docs/methods.md §3.6 "Converters"; imports turn
PRM800K (§3.4) and Math-Shepherd (§2.1) rows into PATHS rows so human and MC data can be merged and relabelled.

Stated rules. Text is never changed silently: every rule application is counted in the optional `stats`
mapping under the key named here, and `commands.export` reports the totals.

| format | rule | keys in `stats` |
|---|---|---|
| TRL | a step containing the step separator ("\\n" by default) gets every occurrence replaced by one space; with `on_separator="error"` the row is refused instead (pick another `--separator` and pass it to `PRMConfig(step_separator=...)`) | `separator_replaced_rows`, `separator_replaced_steps` |
| OpenRLHF, Math-Shepherd | every pre-existing placeholder (`ки` or the one chosen) in the prompt or a step is deleted | `placeholder_removed_rows`, `placeholder_removed_prompts`, `placeholder_removed_steps` |
| OpenRLHF `--soft` | a row with a null MC value is skipped (`null_mc="skip"`), filled from its hard label as 1.0/0.0 (`"hard"`) or refused (`"error"`) | `null_mc_skipped_rows`, `null_mc_filled_rows`, `null_mc_filled_steps` |
| Qwen2.5-Math-PRM | every pre-existing `<extra_0>` in the prompt or a step is deleted | `step_token_removed_rows`, `step_token_removed_prompts`, `step_token_removed_steps` |
| PRM800K export | ratings are +1/-1 from the hard labels; an all-True path that is not terminal finishes `give_up`, not `solution` | `non_terminal_give_up_rows` |
| all exports | a row without steps is skipped (it carries no step label) | `empty_skipped_rows` |
| PRM800K import | neutral (0) ratings follow `neutral`; unrated alternatives are skipped; `drop` cuts a path before a neutral step | `neutral_paths_cut`, `neutral_alternatives_dropped`, `unrated_alternatives_skipped`, `alternative_rows` |
| Math-Shepherd import | placeholders before "Step 1:" (annotation errors in the question) are dropped with their labels | `placeholder_in_prompt_dropped` |

One module per format (`trl`, `openrlhf`, `math_shepherd`, `qwen_prm`, `prm800k`), what they share in `common`;
every public name is importable from `schemas.formats` as before.
"""

from __future__ import annotations

from schemas.formats.common import FormatError, Stats, import_config_hash
from schemas.formats.math_shepherd import MATH_SHEPHERD_ANSWER_MARKER, from_math_shepherd, to_math_shepherd
from schemas.formats.openrlhf import (
    OPENRLHF_PLACEHOLDER,
    OPENRLHF_REWARD_TOKENS,
    check_openrlhf_row,
    placeholder_candidates,
    placeholder_problem,
    to_openrlhf,
)
from schemas.formats.prm800k import NEUTRAL_POLICIES, PRM800K_ANSWER_MARKER, Neutral, from_prm800k, to_prm800k
from schemas.formats.qwen_prm import QWEN_PRM_SCHEMA, QWEN_STEP_TOKEN, QWEN_SYSTEM_PROMPT, to_qwen_prm
from schemas.formats.trl import TRL_SCHEMA, TRL_SEPARATOR, replace_separator, to_trl

__all__ = [
    "FormatError",
    "MATH_SHEPHERD_ANSWER_MARKER",
    "NEUTRAL_POLICIES",
    "Neutral",
    "OPENRLHF_PLACEHOLDER",
    "OPENRLHF_REWARD_TOKENS",
    "PRM800K_ANSWER_MARKER",
    "QWEN_PRM_SCHEMA",
    "QWEN_STEP_TOKEN",
    "QWEN_SYSTEM_PROMPT",
    "Stats",
    "TRL_SCHEMA",
    "TRL_SEPARATOR",
    "check_openrlhf_row",
    "from_math_shepherd",
    "from_prm800k",
    "import_config_hash",
    "placeholder_candidates",
    "placeholder_problem",
    "replace_separator",
    "to_math_shepherd",
    "to_openrlhf",
    "to_prm800k",
    "to_qwen_prm",
    "to_trl",
]
