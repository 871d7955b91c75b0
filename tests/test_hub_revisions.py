"""Hub models and datasets pinned to a commit sha before a run (pipelines/pins.py), against a stubbed Hub.

No test reaches the network: `HfApi.model_info` and `dataset_info` are replaced by stubs that answer a sha per
(repo, revision) and record each call, or by stubs that fail the test when a lookup should not happen.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import apache_beam as beam
import huggingface_hub
import pytest
from huggingface_hub import constants as hub_constants

from commands.cli import run_dir
from engines.handler import engine_fingerprint
from pipelines import synthesize
from pipelines.pins import pin_revisions
from schemas.config import ConfigError, config_from_dict
from transforms import read

REPO = Path(__file__).resolve().parents[1]
MAIN_SHA = "a" * 40
TAG_SHA = "b" * 40
DATA_SHA = "c" * 40
HAND_SHA = "0123456789abcdef0123456789abcdef01234567"


class StubHub:
    """Answers `model_info`/`dataset_info` with a sha per revision and records (kind, repo, revision)."""

    def __init__(self, shas: dict[str | None, str]):
        self.shas = shas
        self.calls: list[tuple[str, str, str | None]] = []

    def install(self, monkeypatch) -> StubHub:
        def answer(kind):
            def info(_api, repo_id, *, revision=None, timeout=None, **_):
                assert timeout, "a Hub lookup must carry a timeout"
                self.calls.append((kind, repo_id, revision))
                return SimpleNamespace(id=repo_id, sha=self.shas[revision])

            return info

        monkeypatch.setattr(huggingface_hub.HfApi, "model_info", answer("model"))
        monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", answer("dataset"))
        return self


def no_lookup(monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError(f"unexpected Hub lookup: {args[1:]} {kwargs}")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", refuse)
    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", refuse)


@pytest.fixture
def problems(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text(json.dumps({"problem_id": "p1", "question": "Q: 1+2=?", "answer": "3"}) + "\n")
    return path


def hub_config(problems, **overrides):
    data = {
        "input": {"path": str(problems), "id_field": "problem_id", "answer_format": "plain"},
        "policy": {"engine": "transformers", "model": "org/policy-7b"},
    }
    return config_from_dict(data, [f"{k}={v}" for k, v in overrides.items()])


def test_a_hub_model_is_pinned_to_the_stubs_sha(problems, monkeypatch):
    hub = StubHub({None: MAIN_SHA}).install(monkeypatch)
    config = hub_config(problems)
    pinned, pins = pin_revisions(config)
    assert hub.calls == [("model", "org/policy-7b", None)]
    assert pinned.policy.revision == MAIN_SHA
    assert pins == {"policy.model": {"repo": "org/policy-7b", "repo_type": "model", "requested": None, "sha": MAIN_SHA}}
    assert config.policy.revision is None  # the caller's config is left as it was


def test_the_sha_reaches_the_fingerprint_and_the_version_folder(problems, monkeypatch):
    config = hub_config(problems)
    StubHub({None: MAIN_SHA}).install(monkeypatch)
    before, _ = pin_revisions(config)
    StubHub({None: TAG_SHA}).install(monkeypatch)  # the Hub repo moved on
    after, _ = pin_revisions(config)
    assert engine_fingerprint(before.policy) != engine_fingerprint(after.policy)
    assert before.config_hash() != after.config_hash()
    assert run_dir("/root", before) != run_dir("/root", after)


def test_a_tag_is_resolved_to_its_sha(problems, monkeypatch):
    hub = StubHub({"v1.0": TAG_SHA}).install(monkeypatch)
    pinned, pins = pin_revisions(hub_config(problems, **{"policy.revision": "v1.0"}))
    assert hub.calls == [("model", "org/policy-7b", "v1.0")]
    assert pinned.policy.revision == TAG_SHA
    assert pins["policy.model"]["requested"] == "v1.0"
    assert pins["policy.model"]["sha"] == TAG_SHA


def test_a_full_sha_is_kept_without_a_lookup(problems, monkeypatch):
    no_lookup(monkeypatch)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # offline is fine with a hand pin
    config = hub_config(problems, **{"policy.revision": HAND_SHA})
    pinned, pins = pin_revisions(config)
    assert pinned.policy.revision == HAND_SHA
    assert pinned.config_hash() == config.config_hash()
    assert pins["policy.model"] == {
        "repo": "org/policy-7b",
        "repo_type": "model",
        "requested": HAND_SHA,
        "sha": HAND_SHA,
    }


def test_an_unreachable_hub_is_a_clear_config_error(problems, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    with pytest.raises(ConfigError, match=r"^policy\.model: cannot resolve the Hub model 'org/policy-7b'") as error:
        pin_revisions(hub_config(problems, **{"policy.revision": "main"}))
    assert "Name or service not known" in str(error.value)
    assert "--set policy.revision=<40-hex commit sha>" in str(error.value)


def test_offline_mode_is_refused_at_once_with_how_to_pin(problems, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)  # the real client, refusing to go out
    config = hub_config(problems, **{"judge.enabled": True, "judge.engine.model": "org/judge"})
    config = config_from_dict(config.to_dict(), [f"policy.revision={HAND_SHA}"])
    with pytest.raises(ConfigError, match=r"^judge\.engine\.model: .*--set judge\.engine\.revision=<40-hex"):
        synthesize.pin(config)


def test_a_local_model_folder_and_an_openai_model_are_never_looked_up(problems, monkeypatch):
    no_lookup(monkeypatch)
    local = hub_config(problems, **{"policy.model": str(REPO / "models" / "tiny-arith"), "policy.engine": "vllm"})
    assert pin_revisions(local) == (local, {})
    served = hub_config(problems, **{"policy.engine": "openai", "policy.base_url": "http://127.0.0.1:8000/v1"})
    assert pin_revisions(served) == (served, {})


def test_a_hub_dataset_is_pinned_and_read_at_that_revision(monkeypatch):
    hub = StubHub({None: DATA_SHA}).install(monkeypatch)
    config = config_from_dict(
        {
            "input": {"format": "datasets", "dataset": {"name": "org/problems", "split": "test"}},
            "policy": {"engine": "vllm", "model": str(REPO / "models" / "tiny-arith")},
        }
    )
    pinned, pins = pin_revisions(config)
    assert hub.calls == [("dataset", "org/problems", None)]
    assert pinned.input.dataset.revision == DATA_SHA
    assert pins == {
        "input.dataset": {"repo": "org/problems", "repo_type": "dataset", "requested": None, "sha": DATA_SHA}
    }
    assert config.config_hash() != pinned.config_hash()

    loads = []

    def load_dataset(name, config_name=None, **kwargs):
        loads.append((name, config_name, kwargs))
        return [{"question": "Q: 1+2=?", "answer": "3"}]

    monkeypatch.setattr("datasets.load_dataset", load_dataset)
    rows = list(read._dataset_rows(pinned.input))
    assert loads == [("org/problems", None, {"split": "test", "revision": DATA_SHA})]
    assert rows == [({"question": "Q: 1+2=?", "answer": "3"}, "org/problems[test]#0")]


def test_an_unset_dataset_revision_leaves_the_config_hash_as_it_was(problems):
    # Configs that name no dataset revision keep the hash they had before the key existed (demo byte-identity).
    config = hub_config(problems)
    assert "revision" not in config.data_dict()["input"]["dataset"]
    assert "revision" in config.to_dict()["input"]["dataset"]


def test_the_manifest_records_the_pins_and_the_pinned_revision(problems, tmp_path, monkeypatch):
    StubHub({"main": MAIN_SHA}).install(monkeypatch)
    built = []

    def build(pipeline, config, output, cache=None):  # no engine: the run's wiring alone
        built.append(config)
        (Path(output) / "dead_letters").mkdir(parents=True)
        (Path(output) / "dead_letters" / "dead_letters.jsonl").write_text("")
        _ = pipeline | "Nothing" >> beam.Create([None])

    monkeypatch.setattr(synthesize, "build", build)
    monkeypatch.setattr(synthesize, "finish_run", lambda output: None)
    config = hub_config(problems, **{"policy.revision": "main", "cache.enabled": False})
    manifest = synthesize.run(config, str(tmp_path / "run"))
    assert built[0].policy.revision == MAIN_SHA  # the pipeline runs the pinned config
    assert manifest["pins"]["policy.model"] == {
        "repo": "org/policy-7b",
        "repo_type": "model",
        "requested": "main",
        "sha": MAIN_SHA,
    }
    assert manifest["engine"]["revision"] == MAIN_SHA
    assert manifest["config"]["policy"]["revision"] == MAIN_SHA
    assert manifest["config_hash"] == built[0].config_hash() != config.config_hash()
    on_disk = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert on_disk["pins"] == manifest["pins"]
