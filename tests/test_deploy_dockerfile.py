"""``deploy/Dockerfile`` stays true without a Docker engine: multi-stage; two targets
(``runtime``; ``renderer``: runtime plus Debian's Chromium and pinned fonts), each without
compilers, non-root, HEALTHCHECKed; every process the image runs has a ``__main__``, and
``.dockerignore`` keeps what the Dockerfile copies.

Each check is also shown a deliberately broken copy, and must refuse it.
"""

from __future__ import annotations

import ast
import json
import re
import shlex

import pytest
import yaml

from shared.config import SERVICES
from tests.conftest import ROOT
from tests.deploy_support import (
    COMPILERS,
    DOCKERFILE,
    PORTS,
    PROCESSES,
    RENDERING,
    TARGETS,
    dockerfile_problems,
    lineage,
    parse_dockerfile,
    process_config,
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / DOCKERFILE).read_text()


def test_dockerfile_is_multi_stage_non_root_and_healthchecked(dockerfile, compose):
    assert dockerfile_problems(dockerfile) == []
    stages = parse_dockerfile(dockerfile)
    assert any(COMPILERS.search(arguments) for _, arguments in stages[0]), "build has compilers"
    targets = {s["build"]["target"] for s in compose["services"].values() if "build" in s}
    assert targets == set(TARGETS), "compose builds each target by name"
    runtime = [i for stage in lineage(stages, "runtime") for i in stage]
    renderer = [i for stage in lineage(stages, "renderer") for i in stage]
    (check,) = [arguments for instruction, arguments in runtime if instruction == "HEALTHCHECK"]
    command = json.loads(check[check.index("CMD") + 3 :])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "HEALTHCHECK", "exec")
    # The probe finds each service's port from its command: every service is in its map.
    ports = ast.literal_eval(re.search(r"d = (\{[^}]*\})", command[2])[1])
    names = ast.literal_eval(re.search(r"for s in (\([^)]*\))", command[2])[1])
    assert ports == {name: PORTS[name] for name in SERVICES} and set(names) == set(SERVICES)
    (exposed,) = [arguments for instruction, arguments in runtime if instruction == "EXPOSE"]
    assert set(map(int, exposed.split())) == set(PORTS.values())
    cmds = [json.loads(arguments) for instruction, arguments in renderer if instruction == "CMD"]
    assert tuple(cmds[-1]) == RENDERING


def test_every_process_the_image_runs_has_a_main(compose):
    for command in PROCESSES:
        if command[:2] == ("python", "-m"):
            assert (ROOT / command[2].replace(".", "/") / "__main__.py").is_file(), command
    assert "darkroom = " in (ROOT / "pyproject.toml").read_text()
    for name, service in compose["services"].items():
        if "build" in service:
            assert process_config(service["command"]) is not None, name


def test_dockerignore_keeps_what_the_dockerfile_copies(dockerfile):
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore
    for instruction, arguments in (i for stage in parse_dockerfile(dockerfile) for i in stage):
        if instruction == "COPY" and "--from" not in arguments:
            sources = shlex.split(arguments)[:-1]
            assert all(s.rstrip("/") in kept for s in sources), sources


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("root", "runs as root"),
        ("no user", "runs as root"),
        ("compiler", "installs a compiler"),
        ("single stage", "not multi-stage"),
        ("no healthcheck", "no HEALTHCHECK"),
        ("Chromium in runtime", "runtime: installs Chromium"),
        ("renderer without Chromium", "renderer: does not install chromium"),
        ("a font missing", "renderer: does not install fonts-liberation2"),
        ("renderer from scratch", "renderer: not built FROM runtime"),
        ("recommends installed", "needs --no-install-recommends"),
        ("HOME read-only", "renderer: HOME /app is on the read-only root filesystem"),
        ("downloaded browser", "DARKROOM_CHROMIUM is not Debian's"),
        ("no runtime target", "no stage 'runtime'"),
    ],
)
def test_dockerfile_checks_refuse_a_broken_copy(dockerfile, breakage, expected):
    if breakage == "root":
        broken = dockerfile.replace("USER 10001:10001", "USER root")
    elif breakage == "no user":
        broken = dockerfile.replace("USER 10001:10001", "")
    elif breakage == "compiler":
        broken = dockerfile + "RUN apt-get update && apt-get install -y gcc\n"
    elif breakage == "single stage":
        broken = dockerfile.split("FROM python:3.11-slim-bookworm AS runtime")[0]
    elif breakage == "Chromium in runtime":
        broken = dockerfile.replace(
            "USER 10001:10001\nEXPOSE",
            "RUN apt-get update && apt-get install -y --no-install-recommends chromium"
            " && rm -rf /var/lib/apt/lists/*\nUSER 10001:10001\nEXPOSE",
        )
    elif breakage == "renderer without Chromium":
        broken = dockerfile.replace(" chromium fonts-dejavu-core", " fonts-dejavu-core")
    elif breakage == "a font missing":
        broken = dockerfile.replace(" fonts-liberation2 ", " ")
    elif breakage == "renderer from scratch":
        broken = dockerfile.replace("FROM runtime AS renderer", "FROM python:3.11-slim AS renderer")
    elif breakage == "recommends installed":
        broken = re.sub(r"--no-install-recommends(?=\s*\\\n\s*chromium)", "", dockerfile)
    elif breakage == "HOME read-only":
        broken = re.sub(r"\s*\\\n\s*HOME=/tmp\n", "\n", dockerfile)
    elif breakage == "downloaded browser":
        broken = dockerfile.replace("=/usr/bin/chromium", "=/opt/chrome/chrome")
    elif breakage == "no runtime target":
        broken = dockerfile.replace(" AS runtime", " AS app").replace("FROM runtime", "FROM app")
    else:
        broken = re.sub(r"HEALTHCHECK.*?\]\n", "", dockerfile, flags=re.S)
    assert broken != dockerfile
    assert any(expected in p for p in dockerfile_problems(broken)), dockerfile_problems(broken)
