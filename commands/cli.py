"""StepForge command line: `synthesize`, `annotate`, `demo`, `estimate`, `export`, `import`, `report`, `publish`,
`evaluate`, `verify`, `train`.

    stepforge synthesize --config configs/NAME.yaml --output DIR [--set a.b=c ...] [Beam options]
    stepforge demo [--output DIR]
    stepforge estimate --config configs/NAME.yaml --problems N [--gpu l4|a100|h100] [--from RUN]

(`python run.py ...` in a checkout is the same command.) Unknown options are passed to Beam (default runner:
FnApiRunner), e.g. `--direct_num_workers=2`.

`--help` answers without importing Beam, pyarrow, matplotlib, torch or vLLM: a command's heavy imports happen when
that command runs (tests/test_cli.py checks it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from commands import __version__

# The engine in-process: LLM() starts in ~2 s instead of 14-50 s (VLLM_ENABLE_V1_MULTIPROCESSING, vLLM's docs).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # the checkout (or site-packages when installed)
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))
# Beam's multi_processing workers are fresh interpreters: they find the project through PYTHONPATH.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p)

log = logging.getLogger("stepforge")

# Commands registered by their own modules, which import Beam, pyarrow or matplotlib when imported: only the
# command that runs is imported. name -> (module, its `add_*_commands`, the help line `stepforge --help` shows).
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "export": ("commands.export", "add_export_commands", "convert a run's paths to a trainer format"),
    "import": ("commands.export", "add_export_commands", "import PRM800K or Math-Shepherd rows as labelled paths"),
    "report": ("commands.report", "add_report_commands", "write a self-contained HTML report of a finished run"),
    "publish": ("commands.publish", "add_publish_commands", "upload a finished run to the HF Hub as a branch + tag"),
    "evaluate": (
        "commands.evaluate",
        "add_evaluate_commands",
        "score annotators on ProcessBench, PRM800K or exact arithmetic truth",
    ),
    "verify": (
        "commands.verify",
        "add_verify_commands",
        "run verifiers on their own over existing or generated solutions",
    ),
    "train": ("commands.train", "add_train_commands", "train a PRM (or ORM) on finished runs' labelled shards"),
}


def configs_dir() -> Path:
    """The shipped presets: the checkout's `configs/`, else `./configs` (an installed package has none of its own)."""
    bundled = PROJECT_ROOT / "configs"
    return bundled if bundled.is_dir() else Path.cwd() / "configs"


def _setup_logging(verbose: bool) -> None:
    # vLLM reads VLLM_LOGGING_LEVEL when it is imported (vllm/envs.py), which happens later, inside a command.
    if not verbose:
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    quiet = logging.INFO if verbose else logging.WARNING
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
    from schemas.config import load_config

    # Hub models and datasets pinned to commit shas first: the version folder is the pinned config's hash.
    config, pins = synthesize.pin(load_config(args.config, args.set))
    output = args.output if args.exact_output else run_dir(args.output, config)
    manifest = synthesize.run(config, output, beam_args, cache=os.path.join(args.output, "_cache"), pins=pins)
    finish(manifest, output)
    return 0


def cmd_annotate(args: argparse.Namespace, beam_args: list[str]) -> int:
    from pipelines import annotate
    from schemas.tables import TableError

    parent_run = getattr(args, "from")
    # The parent's own config, then --config and --set on top: a relabel restates nothing it keeps.
    config = annotate.relabel_config(annotate.load_parent(parent_run), args.config, args.set)
    root = args.output or os.path.dirname(os.path.dirname(os.path.normpath(parent_run)))
    output = run_dir(root, config)
    try:
        manifest = annotate.run(parent_run, config, output, beam_args)
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
    from schemas.config import load_config

    root = Path(args.output).resolve()
    problems = root / "input" / "problems.jsonl"
    write_demo_problems(problems, args.problems, args.seed, args.domain)
    overrides = [f"input.path={problems}", *args.set]
    config, pins = synthesize.pin(load_config(configs_dir() / DEMO_DOMAINS[args.domain][1], overrides))
    output = run_dir(str(root), config)
    log.info("demo: %d generated problems in %s, tiny model %s", args.problems, problems, config.policy.model)
    manifest = synthesize.run(config, output, beam_args, cache=str(root / "_cache"), pins=pins)
    finish(manifest, output)
    print(f"Load it:  datasets.load_dataset('parquet', data_files='{output}/data/train-*.parquet', split='train')")
    return 0


def _command_of(argv: list[str]) -> str | None:
    """The subcommand named on the command line: the first word that is not an option (top-level options take no
    value)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; of the commands other modules register (`LAZY_COMMANDS`), only `command`'s module is imported,
    the others are listed by name and help line."""
    parser = argparse.ArgumentParser(
        prog="stepforge", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show engine and Beam logs")
    parser.add_argument("--version", action="version", version=f"stepforge {__version__}")
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
    relabel.add_argument(
        "--config",
        default=None,
        help="a config laid over the parent run's own (only the keys it names; default: none)",
    )
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

    from commands.estimate import add_estimate_command  # light: arithmetic and YAML only

    add_estimate_command(sub)

    chosen = LAZY_COMMANDS.get(command or "", (None,))[0]
    for name, (module, register, help_line) in LAZY_COMMANDS.items():
        if name in sub.choices:
            continue  # registered with another command of its module
        if module == chosen:
            add: Callable[[argparse._SubParsersAction], None] = getattr(importlib.import_module(module), register)
            add(sub)
        else:
            sub.add_parser(name, help=help_line, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 2 for a refused config."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_of(argv))
    args, beam_args = parser.parse_known_args(argv)
    _setup_logging(args.verbose)
    from schemas.config import ConfigError

    try:
        return args.func(args, beam_args)
    except ConfigError as error:
        print(f"config error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
