"""Code versions and data versions of the assets, derived, never typed by hand.

- Code version: a sha256 over the asset function's body (decorator left out, so scheduling
  settings do not count), the source of every `lmlib` and `dagster_project` module it uses
  (followed through their top-level imports) and `lmlib.__version__`. Changing a filter changes
  `filtered_documents`' version and not the tokenizer's; Dagster then shows what is unsynced.
- Data version: the sha256 of an artifact's file hashes (`manifest["files"]`, not the manifest
  itself, which also records the commit), so a byte-identical rerun reports the same version and
  nothing downstream is marked changed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import json
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from dagster import AssetsDefinition, DataVersion

import lmlib

# Modules whose source counts towards a code version; the asset modules and the Definitions are
# left out (one asset's edit must not change its neighbours' versions).
_FOLLOWED = ("lmlib", "dagster_project")
_NOT_FOLLOWED = ("dagster_project.assets", "dagster_project.definitions")


def _followed(module: str) -> bool:
    return (module.split(".")[0] in _FOLLOWED
            and not any(module == name or module.startswith(name + ".") for name in _NOT_FOLLOWED))


def _module_file(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def _imported_modules(module: str, source: str) -> set[str]:
    """Modules named by the top-level imports of `module` (function-level imports are lazy ones
    that break cycles, such as the asset graph; they do not count)."""
    found = set()
    package = module if _module_file(module).name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = importlib.util.resolve_name("." * node.level + (node.module or ""), package) \
                if node.level else node.module
            found.add(base)
            # `from lmlib.web import extraction` names a submodule
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if _followed(base) and importlib.util.find_spec(base).submodule_search_locations
                         and _module_file(f"{base}.{alias.name}"))
    return {name for name in found if _followed(name)}


def module_closure(roots: Iterable[str], read: Callable[[Path], str]) -> dict[str, str]:
    """{module: source} of `roots` and every followed module they import, transitively."""
    sources: dict[str, str] = {}
    pending = [name for name in roots if _followed(name)]
    while pending:
        name = pending.pop()
        path = _module_file(name) if name not in sources else None
        if path is None:
            continue
        sources[name] = read(path)
        pending.extend(_imported_modules(name, sources[name]) - sources.keys())
    return sources


def _code_objects(code: types.CodeType) -> Iterable[types.CodeType]:
    yield code
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            yield from _code_objects(constant)  # lambdas and nested functions


def used_modules(function: Callable) -> set[str]:
    """The modules of the functions and classes `function` (and its lambdas) refers to."""
    modules = set()
    for code in _code_objects(function.__code__):
        for name in code.co_names:
            module = inspect.getmodule(function.__globals__.get(name)) \
                if name in function.__globals__ else None
            if module is not None:
                modules.add(module.__name__)
    return modules


def function_body(function: Callable) -> str:
    """The function's source without its decorators, normalised (comments and layout dropped)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    definition = tree.body[0]
    definition.decorator_list = []
    return ast.unparse(definition)


def code_version(function: Callable, read: Callable[[Path], str] = Path.read_text) -> str:
    """The derived code version of an asset whose compute function is `function`; `read` gives
    a module file's source (tests pass a changed one)."""
    digest = hashlib.sha256(f"lmlib {lmlib.__version__}\n{function_body(function)}".encode())
    for module, source in sorted(module_closure(used_modules(function), read).items()):
        digest.update(f"\n# {module}\n{source}".encode())
    return digest.hexdigest()[:16]


def with_code_versions(assets: Sequence, read: Callable[[Path], str] = Path.read_text) -> list:
    """`assets` with each executable asset's derived code version set (specs pass through)."""
    versioned = []
    for asset in assets:
        if isinstance(asset, AssetsDefinition) and asset.is_executable:
            version = code_version(asset.op.compute_fn.decorated_fn, read)
            asset = asset.map_asset_specs(
                lambda spec, version=version: spec.replace_attributes(code_version=version))
        versioned.append(asset)
    return versioned


def content_hash(manifest: Mapping) -> str:
    """sha256 of an artifact's file hashes: equal for byte-identical artifacts."""
    files = json.dumps(manifest["files"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(files.encode()).hexdigest()


def data_version(manifest: Mapping) -> DataVersion:
    return DataVersion(content_hash(manifest))
