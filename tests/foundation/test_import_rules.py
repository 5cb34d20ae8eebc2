"""The import rules of relay's house (docs/ARCHITECTURE.md "Import rules"), read from the source (AST).

Every import counts: module-level, inside functions (lazy), and ``importlib.import_module("relay...")``
strings. Rules:

1. the sans-I/O core (``CORE``) imports nothing of relay but ``relay._fast`` and the core itself;
2. nothing imports ``relay.web`` except ``relay/cli.py``, ``relay/__main__.py``, ``relay.web`` itself
   (and tests): no exceptions;
3. no import cycles between relay's modules, nor between its top-level packages (``relay.web``,
   ``relay.media``, ``relay.auth``, ...);
4. relay modules are imported by name, never by a string (``importlib.import_module`` with a computed
   name only where ``DYNAMIC_IMPORTS`` says why);
5. the domain modules (``DOMAIN``) import neither aiohttp nor ``relay.web``; every folder of modules is a package.
6. the call layer (``relay.call``) imports neither edge nor the web layer, and the WebSocket edge
   (``relay.wsedge``) does not import the WebRTC edge (``relay.media``): both edges stand on the call layer.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RELAY = ROOT / "relay"

#: the sans-I/O core: events + ``now`` in, actions out (issue #13)
CORE = ("relay.bridge", "relay.upstream", "relay.throttle")
CORE_MAY_IMPORT = ("relay._fast",)

WEB = "relay.web"
CALL_LAYER = "relay.call"
EDGES = ("relay.media", "relay.wsedge")
WEB_IMPORTERS = {"relay.cli", "relay.__main__"}
#: modules allowed ``importlib.import_module(<computed name>)``, and why
DYNAMIC_IMPORTS = {
    "relay.media.compat": "resolves the aiortc/aioice names of its TABLE (never a relay module) at start-up",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in RELAY.rglob("*.py")}


def _resolve(name: str) -> str:
    """The relay module an imported name lives in (``relay.web.keys.SETTINGS`` -> ``relay.web.keys``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _imports(module: str, path: Path) -> tuple[list[tuple[str, int]], list[int]]:
    """(relay modules imported by ``module`` with line numbers, lines of computed import_module calls)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[str, int]] = []
    dynamic: list[int] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names = [f"{origin}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Call) and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (isinstance(node.func, ast.Name) and node.func.id in ("import_module", "__import__"))):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names = [arg.value]
            else:
                dynamic.append(node.lineno)
        found += [(_resolve(n), node.lineno) for n in names if n == "relay" or n.startswith("relay.")]
    return [(target, line) for target, line in found if target != module], dynamic


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _in(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(edges: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_the_scan_sees_relay() -> None:
    # the scan itself: it finds the modules and the kinds of import the rules are about
    assert {"relay.bridge.core", "relay.web.app", "relay.auth", "relay.cli"} <= set(MODULES)
    assert "relay.web.realtime" in [t for t, _ in GRAPH["relay.web.app"][0]]
    lazy = [t for t, _ in GRAPH["relay.web.admin"][0]]
    assert "relay.web.app_api.admin" in lazy  # an import inside a function counts


def test_the_core_imports_only_fast() -> None:
    bad = [f"{m}:{line} imports {t}" for m, (edges, _) in GRAPH.items() if any(_in(m, c) for c in CORE)
           for t, line in edges
           if not any(_in(t, c) for c in CORE + CORE_MAY_IMPORT)]
    assert not bad, bad


def test_nothing_imports_web_but_the_cli() -> None:
    bad = [f"{m}:{line} imports {t}" for m, (edges, _) in GRAPH.items()
           if not _in(m, WEB) and m not in WEB_IMPORTERS
           for t, line in edges if _in(t, WEB)]
    assert not bad, bad


def test_no_module_cycles() -> None:
    edges = {m: {t for t, _ in imports} for m, (imports, _) in GRAPH.items()}
    assert not _cycles(edges), _cycles(edges)


def test_no_package_cycles() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for m, (imports, _) in GRAPH.items():
        for t, _line in imports:
            if _package(t) != _package(m):
                edges[_package(m)].add(_package(t))
    assert not _cycles(edges), _cycles(edges)


def test_relay_modules_are_imported_by_name() -> None:
    bad = [f"{m}:{line}" for m, (_, dynamic) in GRAPH.items() for line in dynamic if m not in DYNAMIC_IMPORTS]
    assert not bad, bad
    # a constant name is followed by the rules above, but still hides the import from other tools
    strings = [f"{m} imports {t} by a string" for m, p in MODULES.items()
               for t in _import_module_strings(p)]
    assert not strings, strings


def _import_module_strings(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and str(arg.value).startswith("relay"):
                found.append(str(arg.value))
    return found


#: domain modules: no HTTP server side (no aiohttp, no relay.web); relay.web maps their DomainErrors
DOMAIN = ("relay.auth", "relay.errors", "relay.app_api", "relay.files")


def test_domain_modules_know_no_http() -> None:
    # e.g. relay.auth raises AuthError (relay.web.authn maps it), relay.app_api raises AppError/AdminError
    # (relay.web.app_api maps them)
    bad = []
    for module, path in MODULES.items():
        if not any(_in(module, d) for d in DOMAIN):
            continue
        tree = ast.parse(path.read_text())
        imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        imported += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
        bad += [f"{module} imports {m}" for m in imported if m.split(".")[0] == "aiohttp" or _in(m, WEB)]
    assert not bad, bad
    assert {"relay.auth", "relay.app_api.admin", "relay.files.local"} <= set(MODULES)  # the scan sees them


def test_every_folder_of_modules_is_a_package() -> None:
    # a folder without __init__.py is a namespace package: pkgutil.walk_packages (scripts/check_install.sh's
    # "import every shipped module") never enters it, so its modules would ship unchecked (relay/web was one)
    folders = {p.parent for p in RELAY.rglob("*.py")}
    bare = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").is_file())
    assert not bare, bare


def test_the_call_layer_stands_below_both_edges() -> None:
    assert {"relay.call.driver", "relay.call.registry", "relay.call.plane"} <= set(MODULES)
    bad = [f"{m}:{line} imports {t}" for m, (edges, _) in GRAPH.items() if _in(m, CALL_LAYER)
           for t, line in edges if any(_in(t, e) for e in (*EDGES, WEB))]
    assert not bad, bad
    # both edges' calls are drivers of the call layer
    assert "relay.call.driver" in [t for t, _ in GRAPH["relay.media.call"][0]]
    assert "relay.call.driver" in [t for t, _ in GRAPH["relay.wsedge.wscall"][0]]


def test_the_websocket_edge_does_not_import_the_webrtc_edge() -> None:
    bad = [f"{m}:{line} imports {t}" for m, (edges, _) in GRAPH.items() if _in(m, "relay.wsedge")
           for t, line in edges if _in(t, "relay.media")]
    assert not bad, bad
