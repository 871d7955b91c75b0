#!/usr/bin/env python3
"""StepForge command line: `synthesize`, `annotate`, `demo`, `export`, `import`, `report`, `publish`, `evaluate`, `verify`, `train`.

    python run.py synthesize --config configs/NAME.yaml --output DIR [--set a.b=c ...] [Beam options]
    python run.py demo [--output DIR]

Unknown options are passed to Beam (default runner: FnApiRunner), e.g. `--direct_num_workers=2`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

# The engine in-process: LLM() starts in ~2 s instead of 14-50 s (docs/cpu.md §4).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT))
# Beam's multi_processing workers are fresh interpreters: they find the project through PYTHONPATH.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)

from schemas.config import ConfigError, load_config  # noqa: E402

log = logging.getLogger("stepforge")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    quiet = logging.INFO if verbose else logging.WARNING
    # vLLM sets its own logger's level from this when it is imported, over the setLevel below, and logs to stdout.
    os.environ.setdefault("VLLM_LOGGING_LEVEL", logging.getLevelName(quiet))
    for noisy in ("vllm", "apache_beam", "httpx", "urllib3", "filelock", "transformers", "datasets"):
        logging.getLogger(noisy).setLevel(quiet)


def finish(manifest: dict, output: str) -> None:
    """After a run: its HTML report (local run folders) and the summary."""
    if "://" not in output:
        from commands.report import write_report

        log.info("report: %s", write_report(output))
    print_summary(manifest, output)


def print_summary(manifest: dict, output: str) -> None:
    counts = manifest["counts"]
    engine = manifest["engine"]
    timings = manifest["timings"]
    lines = [
        "",
        "StepForge run summary",
        f"  problems:        {counts['problems']} read ok of {counts['read']} rows"
        + (f", {counts['beyond_limit']} past input.limit" if counts.get("beyond_limit") else "")
        + f" ({counts['dead_lettered']} dead letters: {json.dumps(counts['dead_letters_by_reason'])})",
        f"  labelled:        {counts['problems_labelled']} problems, {counts['paths']} paths"
        f" ({counts.get('problems_dead_lettered', 0)} problems dead-lettered after reading)",
        f"  solutions:       {counts['solutions']}",
        f"  steps:           {counts['steps']} ({counts['steps_positive']} positive, {counts['steps_negative']} negative)",
        f"  completions:     {counts['completions']} MC completion rows; "
        f"{engine.get('sequences', 0)} sequences from the policy",
        f"  tokens:          {engine.get('generated_tokens', 0)} in the samples, "
        f"{engine.get('engine_generated_tokens', engine.get('generated_tokens', 0))} of them generated in "
        f"{engine.get('engine_calls', 0)} engine {engine.get('fill_unit', 'call')}s "
        f"(cache: {engine.get('cache_sample_hits', 0)} samples reused, {engine.get('cache_sample_misses', 0)} generated)",
        f"  tokens/s:        {timings['generated_tokens_per_second']} over the run "
        f"({engine.get('engine_tokens_per_second', 0)} inside the engine)",
        f"  wall time:       {timings['wall_seconds']} s",
        f"  counts add up:   {counts['balanced']}",
        f"  output:          {os.path.join(output, 'data')} (manifest: {os.path.join(output, 'manifest.json')})",
        *(f"  WARNING:         {warning}" for warning in manifest.get("warnings") or []),
        "",
    ]
    print("\n".join(lines))


def run_dir(root: str, config) -> str:
    """The versioned run folder under the dataset root: schema version and config hash (docs/infrastructure.md §3.2)."""
    from schemas.tables import SCHEMA_VERSION

    return os.path.join(root, f"schema_v{SCHEMA_VERSION}", f"cfg_{config.config_hash()[:12]}")


def cmd_synthesize(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines import synthesize

    config = load_config(args.config, args.set)
    output = args.output if args.exact_output else run_dir(args.output, config)
    manifest = synthesize.run(config, output, beam_args, cache=os.path.join(args.output, "_cache"))
    finish(manifest, output)
    return 0


def cmd_annotate(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines import annotate
    from schemas.tables import TableError

    config = load_config(args.config, args.set)
    root = args.output or os.path.dirname(os.path.dirname(os.path.normpath(getattr(args, "from"))))
    output = run_dir(root, config)
    try:
        manifest = annotate.run(getattr(args, "from"), config, output, beam_args)
    except TableError as error:  # a truncated or retyped evidence file: named, no traceback
        print(f"annotate failed: {error}", file=sys.stderr)
        return 2
    finish(manifest, output)
    return 0


# The demo's domains: problem generator module and preset (`--domain`).
DEMO_DOMAINS = {"arithmetic": ("domains.arithmetic", "demo.yaml"), "chains": ("domains.chains", "chains_mc.yaml")}


def write_demo_problems(path: Path, n: int, seed: int, domain: str = "arithmetic") -> None:
    """Generated problems plus two planted bad rows, so the demo shows its dead letters too."""
    import importlib

    generate_problems = importlib.import_module(DEMO_DOMAINS[domain][0]).generate_problems
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(p, sort_keys=True) for p in generate_problems(n, seed)]
    lines.append('{"problem_id": "bad-json", "question": "Q: 1+2=?", ')  # planted: invalid JSON
    lines.append(json.dumps({"problem_id": "bad-missing", "question": "Q: 3+4=?"}))  # planted: no answer
    path.write_text("\n".join(lines) + "\n")


def cmd_demo(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines import synthesize

    root = Path(args.output).resolve()
    problems = root / "input" / "problems.jsonl"
    write_demo_problems(problems, args.problems, args.seed, args.domain)
    overrides = [f"input.path={problems}", *args.set]
    config = load_config(REPO_ROOT / "configs" / DEMO_DOMAINS[args.domain][1], overrides)
    output = run_dir(str(root), config)
    log.info("demo: %d generated problems in %s, tiny model %s", args.problems, problems, config.policy.model)
    manifest = synthesize.run(config, output, beam_args, cache=str(root / "_cache"))
    finish(manifest, output)
    print(f"Load it:  datasets.load_dataset('parquet', data_files='{output}/data/train-*.parquet', split='train')")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="show engine and Beam logs")
    sub = parser.add_subparsers(dest="command", required=True)

    synth = sub.add_parser("synthesize", help="run a synthesis job from a config")
    synth.add_argument("--config", required=True, help="YAML config (see configs/)")
    synth.add_argument("--output", required=True, help="output folder (local, gs:// or s3://)")
    synth.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    synth.add_argument(
        "--exact-output", action="store_true", help="write into --output itself, not its versioned sub-folder"
    )
    synth.set_defaults(func=cmd_synthesize)

    relabel = sub.add_parser("annotate", help="relabel a finished run from its evidence, with no engine call")
    relabel.add_argument("--from", required=True, metavar="RUN", help="the finished run whose evidence is reused")
    relabel.add_argument("--config", required=True, help="the new label/filter/augment config")
    relabel.add_argument("--output", default=None, help="dataset root (default: the parent run's)")
    relabel.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    relabel.set_defaults(func=cmd_annotate)

    demo = sub.add_parser("demo", help="the embedded default: tiny model, generated problems, CPU, offline")
    demo.add_argument("--output", default="out/demo", help="output folder (default: out/demo)")
    demo.add_argument("--problems", type=int, default=48, help="how many problems to generate")
    demo.add_argument("--seed", type=int, default=0, help="problem generator seed")
    demo.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    demo.add_argument(
        "--domain",
        choices=sorted(DEMO_DOMAINS),
        default="arithmetic",
        help="arithmetic (tiny-arith, configs/demo.yaml) or chains (tiny-chain, configs/chains_mc.yaml)",
    )
    demo.set_defaults(func=cmd_demo)

    from commands.evaluate import add_evaluate_commands
    from commands.export import add_export_commands
    from commands.publish import add_publish_commands
    from commands.report import add_report_commands
    from commands.train import add_train_commands
    from commands.verify import add_verify_commands

    add_export_commands(sub)
    add_report_commands(sub)
    add_publish_commands(sub)
    add_evaluate_commands(sub)
    add_verify_commands(sub)
    add_train_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, beam_args = parser.parse_known_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args, beam_args)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
