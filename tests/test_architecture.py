"""The arrows between the stages point one way (docs/architecture.md): every import in the
package, lazy ones inside functions included, is checked against the rooms' rules."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "emergence"
HEAVY = ("torch", "transformers", "accelerate", "lm_eval", "ray")
PLUGINS = ("emergence_plugins", "emergence_tasks")
STAGES = ("emergence.run", "emergence.analysis", "emergence.report", "emergence.lab")
# What each room may import of the package, beyond the core (the top-level nouns).
ALLOWED_STAGES = {
    "core": (),
    "emergence.run": ("emergence.run",),
    "emergence.analysis": ("emergence.analysis",),
    "emergence.report": ("emergence.analysis", "emergence.report"),
    "emergence.lab": STAGES,
    "emergence.cli": STAGES,
}


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(path):
    """(line, imported module) for every import statement in the file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module
            # `from emergence.report import figures` imports the module emergence.report.figures
            yield from ((node.lineno, f"{node.module}.{a.name}") for a in node.names
                        if (ROOT.parent / node.module.replace(".", "/") / f"{a.name}.py").exists())


def _room(module):
    if module == "emergence.cli":
        return "emergence.cli"
    return next((s for s in STAGES if module == s or module.startswith(s + ".")), "core")


def _within(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violation(module, name):
    """Why ``module`` may not import ``name``, or None when it may."""
    room = _room(module)
    if _within(name, PLUGINS):
        return "a plugin module: reach it through the plugin manager"
    if room in ("emergence.analysis", "emergence.report") and _within(name, HEAVY):
        return "analysis and report never need a model library"
    if _within(name, STAGES) and _room(name) != room and _room(name) not in ALLOWED_STAGES[room]:
        return f"room {room} may not import {_room(name)}"
    return None


def test_each_room_imports_only_what_it_may():
    bad = [f"{path.relative_to(ROOT.parent)}:{line} imports {name} ({why})"
           for module, path in _modules() for line, name in _imports(path)
           if (why := violation(module, name))]
    assert not bad, "imports across the architecture's boundaries:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {module: set() for module, _ in _modules()}
    for module, path in _modules():
        graph[module] = {name for _, name in _imports(path) if name in graph and name != module}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


@pytest.mark.parametrize("module, name, allowed", [
    ("emergence.analysis.verdicts", "emergence.run.runner", False),
    ("emergence.analysis.verdicts", "torch", False),
    ("emergence.report.figures", "transformers.utils", False),
    ("emergence.report.context", "emergence.analysis.scaling", True),
    ("emergence.analysis.onset", "emergence.report.figures", False),
    ("emergence.tidy", "emergence_plugins.local_families", False),
    ("emergence.tidy", "emergence.run.config", False),
    ("emergence.lab.corpus", "emergence_tasks.heldout_loss", False),
    ("emergence.lab.demo", "emergence.run.runner", True),
    ("emergence.run.runner", "torch", True),
    ("emergence.run.runner", "emergence.report.build", False),
])
def test_the_rules_name_what_they_forbid(module, name, allowed):
    assert (violation(module, name) is None) == allowed
