"""Fault injection: one poisoned element at each stage after reading becomes a dead letter and the run goes on.

One clean run (tiny model, judge, arithmetic verifier, compression), then two poisoned reruns that generate
nothing: a synthesize that replays the clean run's cached samples (search, grading, base labels, judge) and a
relabel from the clean run's evidence (verifier, label, augment, write). Each poisons a different problem per
stage; every other row must come out exactly as in the clean run, and the counts must still add up.
"""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from schemas.config import config_from_dict

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "tiny-arith"

pytestmark = pytest.mark.skipif(not (MODEL / "config.json").exists(), reason="the tiny model is not in models/")

TABLES = ["data", "filtered", *(f"evidence/{t}" for t in ("problems", "solutions", "completions", "critiques"))]


def make_config(problems: Path):
    data = {
        "run": {"seed": 1},
        "input": {
            "path": str(problems), "id_field": "problem_id", "answer_format": "plain", "domain": "arithmetic",
            "limit": 8,  # of 9 rows: the last one is past the limit, counted and not dead-lettered
        },
        "policy": {"model": str(MODEL)},
        "sampling": {"max_tokens": 64},
        "steps": {"splitter": "step_markers"},
        "search": {"num_solutions": 2, "completions_per_step": 2, "problems_per_batch": 4},
        "annotators": {"arithmetic": {}},
        "judge": {
            "enabled": True, "samples": 2, "sampling": {"max_tokens": 16},
            "template": "{problem}\n{tagged_response}\nEarliest error:",
        },
        "augment": {"compression": {"enabled": True}},
        "output": {"num_shards": 2},
    }  # fmt: skip
    return config_from_dict(data)


def rows(run: Path, table: str) -> list[dict]:
    return [r for p in sorted((run / table).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def letters(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "dead_letters" / "dead_letters.jsonl").read_text().splitlines()]


def problem_of(letter: dict) -> str:
    return json.loads(letter["row"])["problem_id"]


def assert_rest_unchanged(clean: Path, poisoned: Path, ids: set[str], tables: list[str]) -> None:
    """Every row of every table is as in the clean run, except the poisoned problems' rows."""
    for table in tables:
        expected = [r for r in rows(clean, table) if r["problem_id"] not in ids]
        got = [r for r in rows(poisoned, table) if r["problem_id"] not in ids]
        assert got == expected, table
        assert expected or table == "filtered", f"{table}: the clean run wrote rows to compare"


@pytest.fixture(scope="module")
def clean(tmp_path_factory, vllm_engine):
    from domains.arithmetic import generate_problems
    from pipelines import synthesize

    root = tmp_path_factory.mktemp("faults")
    problems = root / "problems.jsonl"
    problems.write_text("".join(json.dumps(p) + "\n" for p in generate_problems(9, seed=5)))
    config = make_config(problems)
    manifest = synthesize.run(config, str(root / "clean"))
    labelled = sorted({r["problem_id"] for r in rows(root / "clean", "data")})
    assert len(labelled) == 8, "every problem under the limit has a labelled path"
    return root, config, manifest, labelled


@pytest.fixture(scope="module")
def poisoned_search(clean):
    """Poisoned at search start (prompt), search (grading), base labels and judge parsing: one problem each."""
    import annotators.labelling as labelling
    import transforms.judge as judge
    import transforms.search as search
    from engines.prompts import PromptRenderer
    from pipelines import synthesize

    root, config, _, labelled = clean
    prompt_id, grader_id, label_id, judge_id = labelled[:4]
    questions = {r["problem_id"]: r["question"] for r in rows(root / "clean", "evidence/problems")}
    render, mc_search, label_paths, judge_search = (
        PromptRenderer.render, search.math_shepherd_search, labelling.label_paths, judge.judge_search
    )  # fmt: skip

    def poisoned_render(self, question):
        if question == questions[prompt_id]:
            raise ValueError("poisoned prompt")
        return render(self, question)

    def poisoned_grader(text, finish_reason, gold):
        raise ValueError("poisoned grader")

    def poisoned_mc_search(problem, prompt, mc, seed):
        grade = poisoned_grader if problem.problem_id == grader_id else None
        return mc_search(problem, prompt, mc, seed, grade=grade)

    def poisoned_label_paths(result, rule):
        if result.problem.problem_id == label_id:
            raise KeyError("poisoned base labels")
        return label_paths(result, rule)

    def poisoned_judge_search(problem_id, *args, **kwargs):
        inner = judge_search(problem_id, *args, **kwargs)
        if problem_id != judge_id:
            return inner

        def parse_fails():
            yield next(inner)  # the critiques are generated (from the cache), then parsing raises
            raise IndexError("poisoned judge parser")

        return parse_fails()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PromptRenderer, "render", poisoned_render)
        patch.setattr(search, "math_shepherd_search", poisoned_mc_search)
        patch.setattr(labelling, "label_paths", poisoned_label_paths)
        patch.setattr(judge, "judge_search", poisoned_judge_search)
        manifest = synthesize.run(config, str(root / "poisoned-search"))
    ids = {"search start": prompt_id, "grading": grader_id, "label": label_id, "judge": judge_id}
    return root / "poisoned-search", manifest, ids


@pytest.fixture(scope="module")
def poisoned_relabel(clean):
    """A relabel from the clean run's evidence poisoned at verify, label, augment and write: one problem each."""
    import annotators.labelling as label
    import transforms.augment as augment
    from annotators.verifiers.arithmetic import ArithmeticVerifier
    from pipelines import annotate

    root, config, _, labelled = clean
    verify_id, label_id, augment_id, write_id = labelled[4:8]
    verify, attach_progress, compress = ArithmeticVerifier.verify, label.attach_progress, augment.compress

    def poisoned_verify(self, problem, steps):
        if problem.problem_id == verify_id:
            raise RecursionError("poisoned verifier")
        return verify(self, problem, steps)

    def poisoned_attach_progress(row, *args):
        if row["problem_id"] == label_id:
            raise ZeroDivisionError("poisoned progress labels")
        attach_progress(row, *args)
        if row["problem_id"] == write_id:
            row["pav_advantages"] = ["not a number"] * len(row["completions"])  # no Arrow float32

    def poisoned_compress(row, *args, **kwargs):
        if row["problem_id"] == augment_id:
            raise ValueError("poisoned compression")
        return compress(row, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ArithmeticVerifier, "verify", poisoned_verify)
        patch.setattr(label, "attach_progress", poisoned_attach_progress)
        patch.setattr(augment, "compress", poisoned_compress)
        manifest = annotate.run(str(root / "clean"), config, str(root / "poisoned-relabel"))
    ids = {"verify": verify_id, "label": label_id, "augment": augment_id, "write": write_id}
    return root / "poisoned-relabel", manifest, ids


def test_the_clean_run_counts_rows_past_the_limit_without_dead_letters(clean):
    root, _, manifest, _ = clean
    counts = manifest["counts"]
    assert counts["read"] == 9 and counts["beyond_limit"] == 1 and counts["problems"] == 8
    assert letters(root / "clean") == [] and counts["dead_lettered"] == 0
    assert counts["balanced"] is True
    assert "| input rows past input.limit (not read) | 1 |" in (root / "clean" / "README.md").read_text()


def _new_letters(root: Path, poisoned: Path) -> dict[str, list[dict]]:
    clean_letters = letters(root / "clean")
    by_problem: dict[str, list[dict]] = {}
    for letter in letters(poisoned):
        if letter not in clean_letters:
            by_problem.setdefault(problem_of(letter), []).append(letter)
    return by_problem


def test_search_stage_faults_are_dead_letters(clean, poisoned_search):
    root = clean[0]
    run, manifest, ids = poisoned_search
    found = _new_letters(root, run)
    assert set(found) == set(ids.values())
    expected = {
        "search start": ("search", "search failed: ValueError: poisoned prompt"),
        "grading": ("search", "search failed: ValueError: poisoned grader"),
        "label": ("label", "label failed: KeyError: 'poisoned base labels'"),
        "judge": ("judge", "judge failed: IndexError: poisoned judge parser"),
    }
    for what, (stage, reason) in expected.items():
        (letter,) = found[ids[what]]
        assert (letter["stage"], letter["reason"]) == (stage, reason), what
        assert json.loads(letter["row"])["question"], "the dead letter keeps the whole problem"
    assert manifest["counts"]["balanced"] is True
    assert manifest["counts"]["problems_dead_lettered"] == 4
    assert manifest["engine"]["cache_sample_misses"] == 0  # a replay: nothing was generated


def test_search_stage_faults_leave_every_other_row_unchanged(clean, poisoned_search):
    run, _, ids = poisoned_search
    assert_rest_unchanged(clean[0] / "clean", run, set(ids.values()), [*TABLES, "evidence/verdicts"])


def test_a_relabel_keeps_the_dead_letters_of_problems_without_evidence(clean, poisoned_search):
    from pipelines import annotate

    root, config, _, _ = clean
    run, _, ids = poisoned_search
    relabelled = root / "relabel-of-poisoned"
    manifest = annotate.run(str(run), config, str(relabelled))
    # Search and judge failures left no evidence: nothing here can recompute them, so their dead letters carry over.
    # The problem whose labelling failed had its evidence stored first: the relabel labels it as the clean run did.
    relabel = ids["label"]
    assert letters(relabelled) == [d for d in letters(run) if problem_of(d) != relabel]
    assert [r for r in rows(relabelled, "data") if r["problem_id"] != relabel] == rows(run, "data")
    assert [r for r in rows(relabelled, "data") if r["problem_id"] == relabel] == [
        r for r in rows(root / "clean", "data") if r["problem_id"] == relabel
    ]
    assert manifest["counts"]["balanced"] is True and manifest["counts"]["problems_dead_lettered"] == len(ids) - 1


def test_relabel_stage_faults_are_dead_letters(clean, poisoned_relabel):
    root = clean[0]
    run, manifest, ids = poisoned_relabel
    found = _new_letters(root, run)
    assert set(found) == set(ids.values())
    (verify,) = found[ids["verify"]]
    assert (verify["stage"], verify["reason"]) == ("verify", "verify failed: RecursionError: poisoned verifier")
    (label,) = found[ids["label"]]
    assert (label["stage"], label["reason"]) == ("label", "label failed: ZeroDivisionError: poisoned progress labels")
    clean_paths = [r for r in rows(root / "clean", "data") if "/hnc" not in r["id"]]
    # Augment and write work on labelled paths: each of the problem's paths is one dead letter.
    augmented = found[ids["augment"]]
    assert len(augmented) == sum(r["problem_id"] == ids["augment"] for r in clean_paths)
    assert {(d["stage"], d["reason"]) for d in augmented} == {
        ("augment", "augment failed: ValueError: poisoned compression")
    }
    written = found[ids["write"]]
    assert len(written) == sum(r["problem_id"] == ids["write"] for r in rows(root / "clean", "data"))
    assert {d["stage"] for d in written} == {"write"}
    assert all(d["reason"].startswith("write failed: ArrowInvalid") for d in written)
    assert all(json.loads(d["row"])["id"] for d in augmented + written), "each keeps its whole labelled path"
    counts = manifest["counts"]
    assert counts["balanced"] is True and counts["problems_dead_lettered"] == 4 and counts["beyond_limit"] == 1
    assert manifest["engine"]["engine_calls"] == 0


def test_relabel_stage_faults_leave_every_other_row_unchanged(clean, poisoned_relabel):
    run, _, ids = poisoned_relabel
    assert_rest_unchanged(clean[0] / "clean", run, set(ids.values()), ["data", "filtered", "evidence/verdicts"])


def test_verify_command_dead_letters_a_row_whose_verification_raises(clean, tmp_path, monkeypatch, capsys):
    import run
    from annotators.verifiers.arithmetic import ArithmeticVerifier

    root, _, _, labelled = clean
    verify = ArithmeticVerifier.verify

    def poisoned_verify(self, problem, steps):
        if problem.problem_id == labelled[0]:
            raise MemoryError("poisoned verifier")
        return verify(self, problem, steps)

    monkeypatch.setattr(ArithmeticVerifier, "verify", poisoned_verify)
    assert run.main(["verify", str(root / "clean"), "--output", str(tmp_path / "v")]) == 0
    report = json.loads(capsys.readouterr().out)
    paths = rows(root / "clean", "data")
    poisoned = [r for r in paths if r["problem_id"] == labelled[0]]
    assert report["rows"] == len(paths) and report["dead_lettered"] == len(poisoned) > 0 and report["balanced"]
    assert report["verifiers"]["arithmetic"]["n"] == len(paths) - len(poisoned)
    dead = letters(tmp_path / "v")
    assert {(d["stage"], d["reason"]) for d in dead} == {("verify", "verify failed: MemoryError: poisoned verifier")}
    kept = rows(tmp_path / "v", "data")
    assert sorted(r["id"] for r in kept) == sorted(r["id"] for r in paths if r["problem_id"] != labelled[0])
    assert all(len(r["arithmetic_labels"]) == len(r["completions"]) for r in kept)


def test_export_dead_letters_a_row_whose_conversion_raises(clean, tmp_path, monkeypatch):
    from commands.export import export_run
    from schemas import formats

    root, _, _, labelled = clean
    to_trl = formats.to_trl

    def poisoned_to_trl(row, *args, **kwargs):
        if row["problem_id"] == labelled[1]:
            raise TypeError("poisoned converter")
        return to_trl(row, *args, **kwargs)

    clean_export = export_run(root / "clean", "trl", tmp_path / "clean")
    monkeypatch.setattr(formats, "to_trl", poisoned_to_trl)
    summary = export_run(root / "clean", "trl", tmp_path / "poisoned")
    poisoned = [r for r in rows(root / "clean", "data") if r["problem_id"] == labelled[1]]
    assert summary["rows_dead_lettered"] == len(poisoned) > 0 and summary["balanced"] is True
    assert summary["rows_out"] == clean_export["rows_out"] - len(poisoned)
    dead = [json.loads(x) for x in (tmp_path / "poisoned" / "dead_letters.jsonl").read_text().splitlines()]
    assert {(d["stage"], d["reason"]) for d in dead} == {("export", "export failed: TypeError: poisoned converter")}
    prompts = {r["prompt"] for r in poisoned}
    assert rows(tmp_path / "poisoned", ".") == [r for r in rows(tmp_path / "clean", ".") if r["prompt"] not in prompts]
    assert (tmp_path / "clean" / "dead_letters.jsonl").read_text() == ""
