"""The core stays platform-free, so every platform shares one pipeline and none leaks into another."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
CORE = ROOT / "chatbots"
ADAPTERS = ROOT / "adapters"
PLATFORM_PACKAGES = {"slack_bolt", "slack_sdk", "discord"}


def test_no_core_module_imports_a_platform_library() -> None:
    offenders = []
    for path in CORE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] in PLATFORM_PACKAGES]
    assert not offenders


def test_importing_the_core_loads_no_platform_library() -> None:
    modules = [f"chatbots.{path.stem}" for path in CORE.glob("*.py") if path.stem != "__init__"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + (
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(PLATFORM_PACKAGES)!r}))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"


def _imports(path: Path, package: str) -> list[str]:
    """Every module path imports, at any depth (function-level too), relative imports resolved against package."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return found


def _package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts if path.name == "__init__.py" else parts[:-1]).removesuffix(".__init__")


def test_the_core_imports_no_adapter_anywhere() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in CORE.rglob("*.py")
        for name in _imports(path, _package_of(path))
        if name.split(".")[0] == "adapters"
    ]
    assert not offenders


def test_no_platform_adapter_imports_another() -> None:
    platforms = {path.name for path in ADAPTERS.iterdir() if (path / "__init__.py").exists()}
    assert {"slack", "discord"} <= platforms
    offenders = []
    for platform in platforms:
        for path in (ADAPTERS / platform).rglob("*.py"):
            for name in _imports(path, _package_of(path)):
                parts = name.split(".")
                if parts[0] == "adapters" and len(parts) > 1 and parts[1] in platforms - {platform}:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders


def test_the_layer_checks_see_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The two checks above are only as good as _imports: it must see what hides inside functions."""
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from ..discord import reply\n    import adapters.runner\n")
    names = _imports(module, "adapters.slack")
    assert "adapters.discord.reply" in names and "adapters.runner" in names


def test_adapters_reach_the_store_only_through_the_engine() -> None:
    """The Engine's small platform API (first_delivery, in_conversation, record_vote, erase_workspace) is the way in."""
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in ADAPTERS.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr in ("store", "sql")
    ]
    assert not offenders
