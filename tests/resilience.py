"""The RESILIENCE.md table: every fault and attack the suites inject, what was observed, counts.

A test takes the ``resilience`` fixture and calls :meth:`Ledger.row` once it has measured what
happened; whether the row is green is the test's own outcome, so a row can only be green when
every assertion after it held. ``RESILIENCE.md`` carries its rows, keyed by test id, in a JSON
comment at its end, so ``make test`` (hostile input), ``make chaos`` (faults, load) or a single
test file each refresh only the rows they measured and the table stays whole. Rows of tests
that are gone (their file, or their id in a file this run collected) are dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "RESILIENCE.md"
_EMBEDDED = re.compile(r"<!-- rows\n(.*)\n-->\n?\Z", re.DOTALL)
_LEDGERS = pytest.StashKey["Ledger"]()


@dataclass
class Row:
    """One fault or attack: where, what was injected, what was seen, and the counts."""

    area: str
    case: str
    injected: str
    observed: str
    accepted: int | None = None
    effects: int | None = None
    duplicates: int | None = None
    errors_5xx: int | None = None
    result: str = "pending"


class Ledger:
    """The rows one test records."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def row(
        self,
        area: str,
        case: str,
        *,
        injected: str,
        observed: str,
        accepted: int | None = None,
        effects: int | None = None,
        duplicates: int | None = None,
        errors_5xx: int | None = None,
    ) -> None:
        """Record what this test injected and observed (counts that do not apply stay None)."""
        self.rows.append(
            Row(area, case, injected, observed, accepted, effects, duplicates, errors_5xx)
        )


@pytest.fixture
def resilience(request: pytest.FixtureRequest) -> Ledger:
    """Where a fault or attack test records its RESILIENCE.md row(s)."""
    ledger = Ledger()
    request.node.stash[_LEDGERS] = ledger
    return ledger


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    ledger = item.stash.get(_LEDGERS, None)
    if ledger is None or report.when not in {"setup", "call"}:
        return
    if report.when == "setup" and report.passed:
        return
    result = "green" if report.passed else ("skipped" if report.skipped else "RED")
    if not ledger.rows:
        reason = str(report.longrepr).strip().splitlines()[-1][:200] if report.longrepr else ""
        ledger.row("—", item.name, injected="—", observed=f"did not finish: {reason}")
    for row in ledger.rows:
        row.result = result
    item.config.stash.setdefault(_RESULTS, {})[item.nodeid] = [asdict(r) for r in ledger.rows]


_RESULTS = pytest.StashKey[dict]()
_DESELECTED = pytest.StashKey[set]()


def pytest_deselected(items: list[pytest.Item]) -> None:
    # A test left out by -k or -m still exists: its row stays.
    if items:
        items[0].config.stash.setdefault(_DESELECTED, set()).update(i.nodeid for i in items)


def pytest_sessionfinish(session: pytest.Session) -> None:
    results = session.config.stash.get(_RESULTS, None)
    if not results:
        return
    kept = recorded(REPORT.read_text() if REPORT.exists() else "")
    collected = {item.nodeid for item in session.items}
    collected |= session.config.stash.get(_DESELECTED, set())
    files = {nodeid.split("::")[0] for nodeid in collected}
    for nodeid in list(kept):
        path = nodeid.split("::")[0]
        if not (ROOT / path).exists() or (path in files and nodeid not in collected):
            del kept[nodeid]
    kept.update(results)
    REPORT.write_text(render(kept))


def recorded(report: str) -> dict[str, list[dict]]:
    """The rows a rendered RESILIENCE.md carries ({} when it carries none)."""
    found = _EMBEDDED.search(report)
    return json.loads(found[1]) if found else {}


def _count(value: int | None) -> str:
    return "—" if value is None else str(value)


def render(results: dict[str, list[dict]]) -> str:
    """RESILIENCE.md from the recorded rows, grouped by area in a stable order."""
    rows = [(nodeid, Row(**raw)) for nodeid, raws in results.items() for raw in raws]
    rows.sort(key=lambda pair: (pair[1].area, pair[0]))
    green = sum(row.result == "green" for _, row in rows)
    lines = [
        "# Resilience",
        "",
        "Produced by the test suites (`make test` for hostile input, `make chaos` for faults and",
        "load; see tests/resilience.py). Each row is one fault or attack: what was injected, what",
        "was observed, and the counts — requests or jobs accepted, effects found, duplicates, 5xx",
        "answers. A row is green only when the test that measured it passed. Do not edit by hand.",
        "",
        f"**{green} of {len(rows)} rows green.**",
        "",
        "| Area | Case | Injected | Observed | Accepted | Effects | Duplicates | 5xx | Result |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _nodeid, row in rows:
        cells = [
            row.area,
            row.case,
            row.injected,
            row.observed,
            _count(row.accepted),
            _count(row.effects),
            _count(row.duplicates),
            _count(row.errors_5xx),
            row.result,
        ]
        lines.append(
            "| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |"
        )
    rows_json = json.dumps(results, indent=0, sort_keys=True).replace("--", "-\\u002d")
    lines += ["", "<!-- rows", rows_json, "-->", ""]
    return "\n".join(lines)
