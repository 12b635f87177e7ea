"""Read our Dockerfiles and replay them without a Docker engine.

The replay runs the build stage's COPY and RUN instructions verbatim (`/bin/sh -c`, as Docker's
shell form does) in a scratch directory, with the stage's ENV whose container paths are mapped
to scratch paths; then it gives the runtime stage's ENV and ENTRYPOINT with the virtualenv mapped
the same way, so a test starts exactly the image's command line. Only the Dockerfile syntax our two
files use is understood: that is checked, not assumed (an unknown instruction is an error).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
KNOWN = {"ARG", "FROM", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD"}


@dataclasses.dataclass
class Instruction:
    keyword: str
    flags: list[str]
    value: str


@dataclasses.dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        """ENV of this stage in order, values unexpanded (`$PATH` stays as written)."""
        env: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.value):
                key, _, value = token.partition("=")
                env[key] = value
        return env

    def exec_form(self, keyword: str) -> list[str]:
        (instruction,) = self.all(keyword)
        parsed: list[str] = json.loads(instruction.value)
        return parsed


@dataclasses.dataclass
class Recipe:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def build(self) -> Stage:
        return self.stages[0]

    @property
    def runtime(self) -> Stage:
        return self.stages[-1]


def logical_lines(text: str) -> list[str]:
    """Join continuation lines; drop comments (also those inside a continued instruction)."""
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    return lines


def parse(path: pathlib.Path) -> Recipe:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword not in KNOWN:
            raise ValueError(f"{path.name}: instruction {keyword} is not understood by the replay")
        flags = []
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            flags.append(flag)
        if keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default
        elif keyword == "FROM":
            base, _, alias = rest.partition(" AS ")
            for key, value in args.items():
                base = base.replace("${" + key + "}", value)
            stages.append(Stage(base=base, name=alias or None, instructions=[]))
        else:
            stages[-1].instructions.append(Instruction(keyword, flags, rest))
    return Recipe(args=args, stages=stages)


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _ignored(name: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(name, p.removeprefix("**/")) for p in patterns)


def copy_context(sources: list[str], dest: pathlib.Path) -> None:
    """COPY from the build context (the repository root), honouring .dockerignore."""
    patterns = dockerignore()
    for source in sources:
        origin = REPO / source
        target = dest / source.rstrip("/") if origin.is_dir() else dest / origin.name
        if origin.is_dir():
            shutil.copytree(
                origin, target, ignore=lambda _d, names: [n for n in names if _ignored(n, patterns)]
            )
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)


def host_path() -> str:
    """PATH without this test run's virtualenv, so nothing resolves to the development install."""
    here = str(pathlib.Path(sys.executable).parent)
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != here)


def expand(env: dict[str, str], base: dict[str, str], paths: dict[str, str]) -> dict[str, str]:
    """`base` plus ENV, container paths mapped to host paths and `$VAR` / `${VAR}` expanded
    against the variables set before (as Docker does)."""
    out = dict(base)
    for key, value in env.items():
        for container, host in paths.items():
            value = value.replace(container, host)
        out[key] = _VAR.sub(lambda m: out.get(m.group(1) or m.group(2), ""), value)
    return out


def replay_build(recipe: Recipe, scratch: pathlib.Path) -> pathlib.Path:
    """Run the build stage; returns the virtualenv it made (the runtime stage copies only it)."""
    stage = recipe.build
    workdir = scratch / "src"
    workdir.mkdir(parents=True)
    paths = {"/opt/berth": str(scratch / "venv"), "/tmp/wheels": str(scratch / "wheels")}
    shims = scratch / "bin"
    shims.mkdir()
    (shims / "python").symlink_to(sys.executable)  # the base image's `python`
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    base["PATH"] = f"{shims}{os.pathsep}{host_path()}"
    env = expand(stage.env(), base, paths)
    for instruction in stage.instructions:
        if instruction.keyword == "COPY":
            *sources, _dest = shlex.split(instruction.value)
            copy_context(sources, workdir)
        elif instruction.keyword == "RUN":
            subprocess.run(
                ["/bin/sh", "-c", instruction.value],
                cwd=workdir,
                env=env,
                check=True,
                capture_output=True,
                text=True,
                timeout=1200,
            )
    return pathlib.Path(env["VIRTUAL_ENV"])


def runtime_env(recipe: Recipe, venv: pathlib.Path) -> dict[str, str]:
    """The runtime stage's ENV on this host: /opt/berth is `venv`, PATH is the host's otherwise."""
    base = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    base["PATH"] = host_path()
    return expand(recipe.runtime.env(), base, {"/opt/berth": str(venv)})


def runtime_files(recipe: Recipe) -> dict[str, pathlib.Path]:
    """Files the runtime stage copies from the build context: container path → repository file."""
    files = {}
    for instruction in recipe.runtime.all("COPY"):
        if not instruction.flags:
            source, dest = shlex.split(instruction.value)
            files[dest] = REPO / source
    return files
