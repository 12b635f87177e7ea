"""`make bench`: the whole benchmark in one command, its ratios measured in one run.

    python -m bench [--quick] [--models mlp,mobilenet_v2] [--out bench/results]

Installs its tools (bench/setup.sh), exports its models, then measures the in-process limit, the
do-nothing transport ceilings, Berth (gRPC and REST, batching off and on), the KServe peer,
Berth on 1, 2, ... CPUs with a worker per CPU (bench.cores) and Berth at twice its capacity
(bench.overload), and writes NAME.md, NAME.json and NAME.png into the
output folder (NAME is "bench", or "quick" for `--quick`, a smoke run of a minute or two that is
not meant to be quoted). A full run of every model also rewrites the README's targets table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import machine, report, suite, targets

ROOT = Path(__file__).resolve().parent.parent


def _setup() -> Path:
    """Run the setup script (its progress goes to the terminal); return the peer's virtualenv."""
    done = subprocess.run(["bash", str(ROOT / "bench" / "setup.sh")], check=True,
                          stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "VENV_PY": sys.executable})
    lines = done.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line)
    return Path(lines[-1])


def _export(models_dir: Path, names: tuple[str, ...], logs_dir: Path) -> None:
    print(f">> exporting models into {models_dir} (kept between runs)", flush=True)
    with (logs_dir / "export.log").open("wb") as log:
        subprocess.run([sys.executable, "-m", "bench.export", str(models_dir), *names],
                       cwd=ROOT, check=True, stderr=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run of a minute or two")
    parser.add_argument("--models", help="comma-separated subset of mlp,mobilenet_v2")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    settings = suite.QUICK if args.quick else suite.Settings()
    if args.models:
        settings = dataclasses.replace(settings, models=tuple(args.models.split(",")))
    name = "quick" if args.quick else "bench"
    build = ROOT / "build" / "bench"
    paths = suite.Paths(models_dir=build / "models", logs_dir=build / "logs",
                        peer_venv=_setup())
    paths.logs_dir.mkdir(parents=True, exist_ok=True)
    _export(paths.models_dir, settings.models, paths.logs_dir)

    started = time.monotonic()
    results = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "settings": {**dataclasses.asdict(settings), "quick": args.quick},
               "machine": machine.describe(paths.peer_venv)}
    results.update(suite.run(settings, paths))
    results["machine"]["load_average_at_end"] = machine.load_average()
    results["elapsed_seconds"] = time.monotonic() - started
    results["targets"] = targets.evaluate(results)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = report.render(results)
    (args.out / f"{name}.md").write_text(markdown)
    if not args.quick and not args.models:
        readme = ROOT / "README.md"
        readme.write_text(report.with_readme_targets(readme.read_text(), results))
    from bench import plot  # matplotlib: installed by _setup, so not importable before it

    plot.draw(results, args.out / f"{name}.png")
    print(markdown)
    print(f">> wrote {args.out}/{name}.md, .json and .png (server logs in {paths.logs_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
