"""Hostile configs: whatever the YAML, ``validate`` exits 2 with messages, never a traceback.

Hypothesis mangles a valid config (subtrees replaced by random YAML values, keys deleted,
unknown keys added, random text in the SQL expression fields, random `${VAR}`s) and also
feeds whole random documents. The in-process click runner keeps a few hundred cases fast;
the pathological files (an alias bomb, deep nesting, binary bytes, a directory) run the real
executable with a timeout, because a hang or a RecursionError is what they provoke.
"""

from __future__ import annotations

import copy
import subprocess
import time

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncengine.cli.main import cli
from tests.e2e.harness import EXE
from tests.reliability.rel_support import record, size

EXAMPLES = size("SYNCENGINE_FUZZ_EXAMPLES", 300)
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

BASE = {
    "state": "/tmp/never-created/state.db",
    "pipelines": {
        "orders": {
            "source": {
                "type": "postgres",
                "dsn": "postgresql://app:Hunter2-s3cret@127.0.0.1:1/src",
                "tables": ["public.orders"],
            },
            "target": {"type": "mongo", "uri": "mongodb://127.0.0.1:1", "database": "shop"},
            "mappings": [
                {
                    "source": "public.orders",
                    "target": "orders",
                    "key": ["id"],
                    "fields": {"_id": "id", "total": "amount_cents / 100.0"},
                    "filter": "status <> 'draft'",
                }
            ],
            "conflicts": {"strategy": "remote"},
            "batch": {"max_rows": 100, "max_wait": "500ms"},
        }
    },
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["${NOPE}", "${NOPE:-x}", "500xs", "-1", "postgres", "mongo", "manual", ""]),
)
yaml_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
sql_text = st.text(alphabet="abc_ ()'\"*+-/<>=,.;0123456789ßé\\$", max_size=40)


def paths(tree: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += paths(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += paths(v, (*prefix, i))
    return out


@st.composite
def mangled(draw: st.DrawFn) -> object:
    tree = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(paths(tree)))
        if not where:
            continue
        parent = tree
        for part in where[:-1]:
            parent = parent[part]
        last = where[-1]
        how = draw(st.sampled_from(["replace", "delete", "unknown", "sql"]))
        if how == "replace":
            parent[last] = draw(yaml_values)
        elif how == "delete":
            del parent[last]
        elif how == "unknown" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=10))] = draw(yaml_values)
        elif how == "sql":
            pipelines = tree.get("pipelines") if isinstance(tree, dict) else None
            mapping = pipelines.get("orders") if isinstance(pipelines, dict) else None
            if isinstance(mapping, dict) and isinstance(mapping.get("mappings"), list):
                first = mapping["mappings"][0] if mapping["mappings"] else None
                if isinstance(first, dict):
                    first[draw(st.sampled_from(["filter", "fields"]))] = (
                        draw(sql_text)
                        if draw(st.booleans())
                        else {draw(st.text(min_size=1, max_size=6)): draw(sql_text)}
                    )
    return tree


TRIED = [0]


@pytest.fixture(scope="module", autouse=True)
def _figures():
    """Figures for the README: the configs tried (recorded at the end of the module)."""
    yield
    record("config_fuzz", inputs=TRIED[0])


def check(runner: CliRunner, tmp_path, text: str | bytes) -> int:
    TRIED[0] += 1
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    result = runner.invoke(cli, ["validate", str(path), "--no-connect"])
    output = result.output
    assert "Traceback" not in output, output
    if result.exit_code == 0:
        assert output.startswith("ok:"), output
        return 0
    assert result.exit_code == 2, f"exit {result.exit_code}: {output!r} {result.exception!r}"
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "problem" in output or "error" in output, output
    assert "Hunter2-s3cret" not in output, output
    return 2


@FUZZ
@given(mangled())
def test_mangled_configs_exit_2_with_messages(tmp_path, tree):
    check(CliRunner(), tmp_path, yaml.safe_dump(tree, allow_unicode=True))


@FUZZ
@given(st.one_of(st.text(max_size=300), yaml_values.map(lambda v: yaml.safe_dump(v))))
def test_random_documents_exit_2_with_messages(tmp_path, text):
    assert check(CliRunner(), tmp_path, text) == 2


def run_exe(tmp_path, content: bytes | None, timeout: float = 30) -> subprocess.CompletedProcess:
    path = tmp_path / "hostile.yaml"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    return subprocess.run(
        [EXE, "validate", str(path), "--no-connect"], capture_output=True, timeout=timeout
    )


ALIAS_BOMB = b"""
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
pipelines: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""
PATHOLOGICAL = {
    "alias bomb (9^9 strings)": ALIAS_BOMB,
    "nesting 5000 deep": b"pipelines: " + b"[" * 5000 + b"]" * 5000,
    "mapping nesting 3000 deep": b"pipelines:\n"
    + b"".join(b"  " * i + b"k%d:\n" % i for i in range(1, 3000)),
    "binary garbage": bytes(range(256)) * 8,
    "utf-16 with BOM": "pipelines: {a: 1}".encode("utf-16"),
    "python object tag": b"pipelines: !!python/object/apply:os.system ['echo pwned']",
    "1 MB of one scalar": b"state: " + b"x" * 1_000_000,
    "NUL bytes": b"pipelines:\x00\x00",
}


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_files_exit_2_quickly(tmp_path, name):
    started = time.monotonic()
    try:
        result = run_exe(tmp_path, PATHOLOGICAL[name])
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{name}: validate hung (> 30 s)") from None
    took = time.monotonic() - started
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert "Traceback" not in out, f"{name}: {out[-1500:]}"
    assert result.returncode == 2, f"{name}: exit {result.returncode}: {out[-1500:]}"
    assert "problem" in out or "error" in out, f"{name}: {out[-500:]}"
    assert "pwned" not in out
    assert took < 20, f"{name}: validate took {took:.1f}s"
    TRIED[0] += 1


def test_a_directory_as_config_exits_2(tmp_path):
    result = run_exe(tmp_path, None)
    out = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 2 and "Traceback" not in out, out
