"""The package's folders are its layers and imports flow only downward: models, then
engine and settings, then apps, then the `Llama` face, then eval, tuning, server and the
command line. Read from the source (every import, lazy ones included), so a new upward
import or a circle fails here before it confuses a reader."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "selfextend_gguf"

# a layer may import its own folder and any layer of a lower rank; layers of one rank
# are independent of each other
RANKS = {"models": 0, "engine": 1, "settings": 1, "apps": 2, "llama": 3, "eval": 4, "tuning": 5, "server": 5,
         "cli": 6, "__main__": 7}
# what any layer may take from the package's root: the native module, the build's CPU
# facts and the version
ROOT_NAMES = {"_core", "_build_cpu", "__version__"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield path, parts[:-1] if parts[-1] == "__init__" else parts, parts[-1] == "__init__"


def _imports(path, name, is_package):
    """(target module parts, imported names) of every import in a file."""
    package = name if is_package else name[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)]
                target = base + tuple(node.module.split(".") if node.module else ())
            else:
                target = tuple(node.module.split("."))
            if target[0] == "selfextend_gguf":
                yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "selfextend_gguf":
                    yield tuple(alias.name.split(".")), []


def _layer(parts):
    return parts[1] if len(parts) > 1 else None


def _edges():
    """module -> modules it imports (names that are modules count as those modules)."""
    known = {parts for _, parts, _ in _modules()}
    edges = {}
    for path, parts, is_package in _modules():
        targets = set()
        for target, names in _imports(path, parts, is_package):
            for n in names:
                if target + (n,) in known:
                    targets.add(target + (n,))
                elif target in known or target == ("selfextend_gguf",):
                    targets.add(target if n not in ROOT_NAMES else target + (n,))
            if not names:
                targets.add(target)
        edges[parts] = targets
    return edges


def test_every_import_runs_downward():
    upward = []
    for source, targets in _edges().items():
        layer = _layer(source)
        if layer is None:          # the package's face imports what it exposes
            continue
        for target in targets:
            to = _layer(target)
            if to is None or to in ROOT_NAMES or to == layer:
                continue
            assert layer in RANKS and to in RANKS, f"a module outside the known layers: {source} -> {target}"
            if RANKS[to] >= RANKS[layer]:
                upward.append(f"{'.'.join(source)} -> {'.'.join(target)}")
    assert not upward, "imports that do not run downward:\n" + "\n".join(upward)


def test_no_circle_between_modules():
    edges = _edges()
    state, stack, circles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in edges:
                continue
            if state.get(nxt) == "open":
                circles.append(" -> ".join(".".join(p) for p in stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in edges:
        if node not in state and node != ("selfextend_gguf",):
            visit(node)
    circles = [c for c in circles if not c.startswith("selfextend_gguf ->")]
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("folder", ["engine", "settings", "apps", "models", "cli", "server", "eval", "tuning"])
def test_each_layer_is_a_folder(folder):
    assert (PACKAGE / folder / "__init__.py").exists()


def test_no_module_sits_loose_beside_the_layers():
    loose = sorted(p.name for p in PACKAGE.glob("*.py")
                   if p.name not in ("__init__.py", "__main__.py", "llama.py", "_build_cpu.py"))
    assert not loose, f"modules outside a layer folder: {loose}"
