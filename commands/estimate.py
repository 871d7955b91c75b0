"""`stepforge estimate`: what a run would cost before it runs: sequences, generated tokens, GPU-hours, dollars.

    stepforge estimate --config configs/omegaprm.yaml --problems 10000 [--gpu l4|a100|h100] [--from RUN] [--set k=v]

The arithmetic is `annotators.run_cost`; throughput and prices per GPU type are docs/scale.md's ranges. Tokens per
sequence and steps per solution come from a finished run's manifest (`--from RUN`, best a small run of the same
config: `--set input.limit=20`) or from the documented default calibration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def format_estimate(result: dict[str, Any]) -> str:
    """The estimate as the lines the command prints."""
    calibration = result["calibration"]
    hours_low, hours_high = result["gpu_hours"]
    dollars_low, dollars_high = result["dollars"]
    return "\n".join(
        [
            f"StepForge estimate: {result['problems']} problems, search {result['method']}",
            f"  sequences:       {result['sequences']:,} ({result['sequences_per_problem']} per problem: "
            f"{result['sequences_per_problem_from']})",
            f"  generated tokens: {result['generated_tokens']:,} "
            f"({calibration['tokens_per_sequence']:.1f} per sequence, "
            f"{calibration['steps_per_solution']:.2f} steps per solution; calibration: {calibration['source']})",
            f"  GPU-hours:       {hours_low:,.2f} - {hours_high:,.2f} on {result['gpu_name']}",
            f"  price:           ${dollars_low:,.2f} - ${dollars_high:,.2f} on demand (docs/scale.md)",
        ]
    )


def cmd_estimate(args: argparse.Namespace, beam_args: list[str] | None = None) -> int:
    """Print the estimate (and write it as JSON with --json); exit 2 on a bad config or run."""
    from annotators import run_cost
    from schemas.config import load_config

    if beam_args:
        print(f"estimate: unknown options {beam_args}", file=sys.stderr)
        return 2
    config = load_config(args.config, args.set)
    if args.from_run:
        manifest_path = Path(args.from_run) / "manifest.json"
        if not manifest_path.is_file():
            print(f"estimate: {args.from_run}: no manifest.json, so not a finished run", file=sys.stderr)
            return 2
        try:
            calibration = run_cost.calibration_from_manifest(json.loads(manifest_path.read_text()), args.from_run)
        except ValueError as error:
            print(f"estimate: {error}", file=sys.stderr)
            return 2
    else:
        calibration = run_cost.default_calibration(config.sampling.max_tokens)
    result = run_cost.estimate(config.to_dict()["search"], args.problems, calibration, args.gpu)
    print(format_estimate(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


def add_estimate_command(subparsers: argparse._SubParsersAction) -> None:
    """Register `estimate` on the CLI's subparsers (it sets `func`)."""
    parser = subparsers.add_parser("estimate", help="expected sequences, tokens, GPU-hours and price of a run")
    parser.add_argument("--config", required=True, help="YAML config (see configs/)")
    parser.add_argument("--problems", type=int, required=True, help="how many problems the run would read")
    parser.add_argument("--gpu", choices=("l4", "a100", "h100"), default="l4", help="GPU type (default: l4)")
    parser.add_argument(
        "--from", dest="from_run", default=None, metavar="RUN", help="calibrate from a finished run's manifest"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the estimate as JSON")
    parser.set_defaults(func=cmd_estimate)
