"""The package's layout holds: imports flow one way (models -> mask -> locator -> finetune -> harness ->
comparison -> paper -> cli) and no chain of modules imports itself (no import cycle, not even through an import inside
a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import lm_eval_achilles

ROOT = Path(lm_eval_achilles.__file__).parent
LAYERS = ["models", "mask", "locator", "finetune", "harness", "comparison", "paper", "cli"]


def _modules():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(("lm_eval_achilles", *parts)).removesuffix(".__init__")
        yield name, path, ast.parse(path.read_text(encoding="utf-8"))


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.Module):
    """(line, module) of every ``from lm_eval_achilles.X import ...``, inside functions too (an import
    hidden in a function still closes a cycle), except under ``if TYPE_CHECKING``."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lm_eval_achilles"):
            yield node.lineno, node.module
        todo.extend(ast.iter_child_nodes(node))


def test_imports_flow_one_way():
    upward = []
    for name, path, tree in _modules():
        layer = name.split(".")[1] if name.count(".") >= 2 else None
        if layer not in LAYERS:
            continue
        for line, module in _imports(tree):
            target = module.split(".")[1] if module.count(".") >= 1 else None
            if target in LAYERS and LAYERS.index(target) > LAYERS.index(layer):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = {name: {m for _, m in _imports(tree)} for name, _, tree in _modules()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt) :] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
