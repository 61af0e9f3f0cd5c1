"""The README runs as pasted: every shell block of the Quick start and of each API section,
in order, in one bash with ``set -euo pipefail``, against a platform of the test's own.

The blocks are read from README.md, never copied: the only thing the test supplies is
``DARKROOM_URL`` (the blocks default it to the local gateway) and the platform's settings, so
``.venv/bin/darkroom`` reaches the same database as the services. A block marked with
``<!-- readme-test: skip … -->`` on the line before its fence is not run (``make run``
itself).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid

import pytest

from services.auth import domain as auth_domain
from shared.runtime import POOL
from tests.conftest import ROOT, start_platform

#: The sections whose shell blocks run, in the README's order (a heading renamed or moved
#: fails here rather than leaving its blocks unrun).
SECTIONS = (
    "Quick start",
    "Ingest",
    "Progimage: OAuth 2.0 and image processing",
    "Haut.ai-style subjects and images",
    "Happo reports and comparisons",
)
SKIP_MARKER = "<!-- readme-test: skip"
MARK = "@@readme-block"
FENCE = re.compile(r"^```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[tuple[str, str, bool]]:
    """``(section, code, skipped)`` for every ``sh`` block of SECTIONS, in README order."""
    text = (ROOT / "README.md").read_text()
    parts = re.split(r"^## (.+)$", text, flags=re.MULTILINE)
    found = {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}
    headings = [parts[i].strip() for i in range(1, len(parts), 2)]
    assert [h for h in headings if h in SECTIONS] == list(SECTIONS), headings
    blocks = []
    for section in SECTIONS:
        body = found[section]
        for match in FENCE.finditer(body):
            before = body[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            blocks.append((section, match.group(1), before.startswith(SKIP_MARKER)))
    return blocks


def script_of(blocks: list[tuple[str, str, bool]]) -> str:
    """One bash script: each block after a marker line on stdout and stderr, so each block's
    output can be told apart and a failure names its block."""
    lines = ["set -euo pipefail", """trap 'echo "failed: $BASH_COMMAND" >&2' ERR"""]
    for number, (_section, code, skipped) in enumerate(blocks):
        if skipped:
            continue
        # After a newline: curl's answers end without one.
        lines.append(f"printf '\\n{MARK} {number}\\n' | tee /dev/stderr")
        lines.append(code)
    lines.append(f"printf '\\n{MARK} done\\n'")
    return "\n".join(lines) + "\n"


def outputs_by_block(stdout: str) -> dict[str, str]:
    """Each block's stdout, keyed by its number (and ``done`` when the script finished)."""
    pieces = re.split(rf"^{MARK} (\S+)\n", stdout, flags=re.MULTILINE)
    return {pieces[i]: pieces[i + 1] for i in range(1, len(pieces), 2)}


def json_objects(output: str) -> list[dict]:
    """The JSON objects a block printed, in order, whatever text is around them."""
    decoder, found, at = json.JSONDecoder(), [], output.find("{")
    while at != -1:
        try:
            value, end = decoder.raw_decode(output, at)
        except ValueError:
            at = output.find("{", at + 1)
            continue
        found.append(value)
        at = output.find("{", end)
    return found


@pytest.fixture
async def platform(run_id, secrets_env, tmp_path, inbox):
    """A platform of this test's own: the README's fixed e-mail address and the anonymous
    rate bucket of 127.0.0.1 are then nobody else's."""
    async for running in start_platform(
        f"darkroom_test_{run_id}_readme", secrets_env, tmp_path / "platform", inbox
    ):
        yield running


async def test_readme_blocks_run_as_pasted(platform, tmp_path):
    for tool in ("bash", "curl", "jq", "openssl", "md5sum", "base64"):
        assert shutil.which(tool), f"the README's examples need {tool} (apt-get install {tool})"
    blocks = readme_blocks()
    skipped = [code.splitlines()[0] for _section, code, skip in blocks if skip]
    assert skipped == [
        "make run     # creates .venv, installs, generates secrets, creates + migrates the"
        " database,"
    ], "keep skipped README blocks to the minimum"
    for section in SECTIONS:
        assert any(s == section and not skip for s, _code, skip in blocks), section

    # The reader's checkout, as far as the blocks can tell: `.venv` beside them; the files the
    # blocks write land in this folder, not in the working tree.
    work = tmp_path / "checkout"
    work.mkdir()
    (work / ".venv").symlink_to(ROOT / ".venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DARKROOM_")}
    env |= platform.env | {"DARKROOM_URL": platform.url}
    # Awaited, not run: the platform serves the blocks' calls from this event loop.
    process = await asyncio.create_subprocess_exec(
        "bash",
        "--noprofile",
        "--norc",
        "-c",
        script_of(blocks),
        cwd=work,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=240)
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
    stdout, stderr = out.decode(), err.decode()
    outputs = outputs_by_block(stdout)
    if process.returncode != 0 or "done" not in outputs:
        last = max((int(k) for k in outputs if k != "done"), default=0)
        section, code, _skip = blocks[last]
        pytest.fail(
            f"README block {last} of {section!r} failed (exit {process.returncode}):\n{code}\n"
            f"--- its output:\n{outputs.get(str(last), '')}\n--- stderr:\n{stderr[-3000:]}"
        )
    ran = {section: [] for section in SECTIONS}
    for number, (section, _code, skip) in enumerate(blocks):
        if not skip:
            ran[section].append(outputs[str(number)])

    # Quick start: the three credentials answer GET /user as Ada.
    quick = ran["Quick start"][0]
    users = json_objects(quick)
    assert len(users) == 3 and {u["email"] for u in users} == {"ada@example.com"}, quick
    assert (work / "before.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Ingest: the anonymous upload, the account's, the plain-text form, the two deletions.
    ingest = ran["Ingest"][0]
    anonymous, owned, *rest = json_objects(ingest)
    deleted = [answer for answer in rest if "deleted" in answer]
    assert "delete_token" in anonymous and "delete_token" not in owned
    assert owned["hash"] == anonymous["hash"]
    assert deleted == [{"hash": anonymous["hash"], "deleted": True}] * 2, ingest
    assert re.search(r"\bOK [0-9a-f]{64}\n", ingest), ingest
    assert (work / "copy.png").read_bytes() == (work / "before.png").read_bytes()

    # Progimage: the code flow's token works on GET /user; the derived file is a real JPEG.
    progimage = ran["Progimage: OAuth 2.0 and image processing"]
    tokens, user, listing = json_objects(progimage[0])
    assert tokens["token_type"] == "bearer" and len(tokens["access_token"]) == 64
    assert user == {"id": users[0]["id"], "name": "Ada", "email": "ada@example.com"}
    processed = json.loads((work / "processed.json").read_text())
    assert [i["id"] for i in listing["data"]] == [processed["data"]["id"]]
    thumb = (work / "thumb.jpg").read_bytes()
    assert thumb[:3] == b"\xff\xd8\xff", thumb[:16]

    # Haut.ai-style: the analysed image listed, read with a signed URL, then deleted.
    hautai = ran["Haut.ai-style subjects and images"][0]
    *_types, ok, listed, image = json_objects(hautai)
    assert ok == {"ok": True}
    assert [i["id"] for i in listed["results"]] == [image["id"]]
    assert image["quality_score"] > 0 and image["signed_url"], image
    assert hautai.rstrip().endswith("204"), hautai

    # Happo: two reports, and a comparison that found the changed button.
    happo = ran["Happo reports and comparisons"][0]
    first, second, summary = json_objects(happo)
    assert first["snapshotCount"] == second["snapshotCount"] == 1
    assert summary["equal"] is False and summary["diffs"] == 1, summary
    comparison = json.loads((work / "comparison.json").read_text())
    assert set(comparison) >= {"equal", "status", "diffs", "compareUrl", "statusImageUrl"}
    assert comparison["compareUrl"].startswith(platform.url)


def exported(printed: str) -> dict[str, str]:
    """The variables ``export NAME=value`` lines set, read as a POSIX shell would."""
    variables = {}
    for line in printed.splitlines():
        words = shlex.split(line)
        assert words[0] == "export" and len(words) == 2, line
        name, _, value = words[1].partition("=")
        variables[name] = value
    return variables


async def test_cli_prints_what_the_readme_evaluates(stack):
    """``--format env`` carries the same values as the JSON contract; ``happo-jwt`` signs a
    token the platform verifies; an application without ``--name`` is named by its host."""
    created = exported(
        stack.cli(
            "account",
            "create",
            "--name",
            "Grace Hopper",
            "--email",
            f"{uuid.uuid4().hex}@example.com",
            "--password",
            "it's a bug's life",
            "--format",
            "env",
        ).stdout
    )
    assert set(created) == {
        "DARKROOM_ACCOUNT_ID",
        "DARKROOM_USER_ID",
        "DARKROOM_API_KEY",
        "DARKROOM_API_SECRET",
        "DARKROOM_TOKEN",
    }
    assert created["DARKROOM_TOKEN"].startswith("drk_")

    key, secret = created["DARKROOM_API_KEY"], created["DARKROOM_API_SECRET"]
    from_env = subprocess.run(
        [sys.executable, "-c", "from services.cli import main; main()", "happo-jwt"],
        env={**os.environ, "DARKROOM_API_KEY": key, "DARKROOM_API_SECRET": secret},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    from_flags = stack.cli("happo-jwt", "--key", key, "--secret", secret).stdout.strip()
    assert from_env == from_flags
    assert auth_domain.verify_jwt(from_env, key, secret) == {"key": key}
    missing = stack.cli("happo-jwt", "--key", key, check=False)
    assert missing.returncode == 1 and "DARKROOM_API_SECRET" in missing.stderr
    assert missing.stdout == ""

    account_id = created["DARKROOM_ACCOUNT_ID"]
    unnamed = json.loads(
        stack.cli(
            "oauth-client",
            "create",
            "--account",
            account_id,
            "--redirect-uri",
            "https://photos.example:8443/cb",
        ).stdout
    )
    named = exported(
        stack.cli(
            "oauth-client",
            "create",
            "--account",
            account_id,
            "--name",
            "  Photo Book ",
            "--redirect-uri",
            "https://photos.example/cb",
            "--format",
            "env",
        ).stdout
    )
    assert set(named) == {"DARKROOM_CLIENT_ID", "DARKROOM_CLIENT_SECRET"}
    names = dict(
        await stack.apps["auth"][POOL].fetch(
            "SELECT client_id, name FROM oauth_clients WHERE client_id = ANY($1)",
            [unnamed["client_id"], named["DARKROOM_CLIENT_ID"]],
        )
    )
    assert names == {
        unnamed["client_id"]: "photos.example:8443",
        named["DARKROOM_CLIENT_ID"]: "Photo Book",
    }
