"""The house rules on imports, read from the source (every import, lazy ones included):

- `contracts` imports only itself (and third-party libraries);
- `saga_log.runtime` imports only `contracts` and itself, and from outside only its
  `__init__` is imported (`from saga_log.runtime import ...`);
- a service imports only `contracts`, `saga_log.runtime` and itself;
- the history (`saga_log.recorder`) and the tools of `saga_log.ops` import only
  `contracts`, `saga_log.runtime` and themselves;
- nothing in the product imports `tools`, `tests` or `bench`;
- no import circles.
(Tests may look inside anything: they are not the product.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("contracts", "saga_log", "services", "tools")
FIRST_PARTY = (*PRODUCT, "tests", "bench")


def modules(root: Path) -> dict[str, Path]:
    """Every module of the product under `root`, by dotted name."""
    found = {}
    for top in PRODUCT:
        for path in sorted((root / top).rglob("*.py")) if (root / top).exists() else []:
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, str]]:
    """What `name` imports: (the module its statement names, the module it loads). They
    differ for `from package import module`, which names the package (its public surface)
    and loads the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                loaded = f"{base}.{alias.name}"
                yield base, loaded if loaded in known else base


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def rule_broken(importer: str, imported: str) -> str | None:
    """Why `importer` may not import `imported`, or None if it may."""
    if not imported.startswith(FIRST_PARTY):
        return None
    inside = within(imported, "saga_log.runtime") and imported != "saga_log.runtime"
    if inside and not within(importer, "saga_log.runtime"):
        return "only saga_log.runtime's __init__ is imported from outside it"
    allowed: tuple[str, ...]
    if within(importer, "contracts"):
        allowed, rule = ("contracts",), "contracts imports only itself"
    elif within(importer, "saga_log.runtime"):
        allowed, rule = ("contracts", "saga_log.runtime"), "the runtime imports only contracts"
    elif within(importer, "services"):
        own = ".".join(importer.split(".")[:2])
        allowed = ("contracts", "saga_log.runtime", own)
        rule = "a service imports only contracts, saga_log.runtime and itself"
    elif within(importer, "saga_log.recorder") or within(importer, "saga_log.ops"):
        own = ".".join(importer.split(".")[:2])
        allowed = ("contracts", "saga_log.runtime", own)
        rule = f"{own} imports only contracts, saga_log.runtime and itself"
    elif importer in ("saga_log", "saga_log.__main__"):
        allowed, rule = ("saga_log.ops",), "saga_log's own entry point runs the ops CLI only"
    else:  # tools
        allowed = ("contracts", "saga_log", "services", "tools")
        rule = "the tools never import tests or bench"
    if any(within(imported, package) for package in allowed):
        return None
    return rule


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph` (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(root: Path) -> list[str]:
    known = modules(root)
    graph: dict[str, set[str]] = {}
    problems = []
    for name, path in known.items():
        graph[name] = set()
        for stated, loaded in imports(name, path, known):
            # A module re-exported by the runtime's public surface counts as that surface.
            why = rule_broken(name, stated if stated == "saga_log.runtime" else loaded)
            if why:
                problems.append(f"{name} imports {loaded}: {why}")
            if loaded in known and loaded != name:
                graph[name].add(loaded)
    # A package's __init__ that re-exports its modules is not a circle with them.
    for name in known:
        graph[name] = {t for t in graph[name] if not within(name, t) or t == name}
    problems += [f"import circle: {' <-> '.join(circle)}" for circle in cycles(graph)]
    return problems


def test_the_product_keeps_the_import_rules_and_has_no_circles() -> None:
    assert violations(ROOT) == []


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"services/payment/handlers.py": "from services.order import domain\n"},
            "services.payment.handlers imports services.order.domain: a service imports only "
            "contracts, saga_log.runtime and itself",
        ),
        (
            {"services/payment/handlers.py": "from saga_log.runtime.delivery import X\n"},
            "services.payment.handlers imports saga_log.runtime.delivery: only "
            "saga_log.runtime's __init__ is imported from outside it",
        ),
        (
            {"saga_log/runtime/service.py": "def docs():\n    from services.order import main\n"},
            "saga_log.runtime.service imports services.order.main: the runtime imports only "
            "contracts",
        ),
        (
            {"contracts/topology.py": "import saga_log.runtime\n"},
            "contracts.topology imports saga_log.runtime: contracts imports only itself",
        ),
        (
            {"saga_log/recorder/api.py": "from saga_log.ops import cli\n"},
            "saga_log.recorder.api imports saga_log.ops.cli: saga_log.recorder imports only "
            "contracts, saga_log.runtime and itself",
        ),
        (
            {
                "contracts/a.py": "from contracts import b\n",
                "contracts/b.py": "def later():\n    from contracts import a\n",
            },
            "import circle: contracts.a <-> contracts.b",
        ),
    ],
)
def test_each_broken_rule_is_named(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    base = {
        f"{package}/__init__.py": ""
        for package in (
            "contracts",
            "saga_log",
            "saga_log/runtime",
            "saga_log/recorder",
            "saga_log/ops",
            "services",
            "services/order",
            "services/payment",
        )
    }
    base |= {
        "services/order/domain.py": "",
        "services/order/main.py": "",
        "saga_log/ops/cli.py": "",
    }
    base |= {"saga_log/runtime/delivery.py": ""}
    write(tmp_path, {**base, **files})
    assert expected in violations(tmp_path)
