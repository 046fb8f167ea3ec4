"""Code states its invariants itself instead of citing a finding ID.

Findings are numbered per file (``F25`` in docs/benchmarks-findings.md, ``R15`` in
docs/reliability-findings.md), and an ID in a comment says nothing to a reader without the
document; a comment may name the document and its section instead.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FINDING = re.compile(r"\b[FR][0-9]{1,3}\b")
#: a lint rule code (``# noqa: F401``) is not a finding
NOQA = re.compile(r"#\s*noqa.*")


def test_no_finding_id_in_engine_code():
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("syncengine", "mappings", "strategies")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FINDING.search(NOQA.sub("", line))
    ]
    assert not found, "\n".join(found)
