"""`run.py verify`: verifiers on their own over generated logic proofs and code with PRLCoder mutations."""

import json

import pyarrow.parquet as pq

from commands.verify import code_rows, logic_rows, verify_rows, write


def test_logic_verifier_finds_every_planted_error(tmp_path):
    pairs = logic_rows(30, seed=5)
    assert any(row["first_error_index"] >= 0 for _, row in pairs) and any(
        row["first_error_index"] < 0 for _, row in pairs
    )
    scores = verify_rows(pairs, ["logic"])
    assert scores["logic"] == {"first_error_agreement": 1.0, "n": 30}
    write(tmp_path, [row for _, row in pairs], ["logic"], {"verifiers": scores})
    table = pq.read_table(tmp_path / "data" / "train-00000-of-00001.parquet")
    assert "logic_labels" in table.column_names and table.num_rows == 30
    assert json.loads((tmp_path / "manifest.json").read_text())["verifiers"]["logic"]["n"] == 30


def test_code_rows_pair_canonical_programs_with_failing_mutations():
    pairs = code_rows(limit=0, seed=0)  # the built-in tasks only
    canonical = [row for _, row in pairs if row["source"] == "code-canonical"]
    mutated = [row for _, row in pairs if row["source"] == "code-mutation"]
    assert canonical and mutated
    assert all(all(row["labels"]) for row in canonical)
    assert all(row["labels"][-1] is False for row in mutated)
    scores = verify_rows(pairs, ["code"])
    assert scores["code"]["n"] == len(pairs)
    assert all(all(v is True for v in row["code_labels"] if v is not None) for row in canonical)
