"""The core stays platform-free, so every platform shares one pipeline and none leaks into another."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

CORE = Path(__file__).parents[1] / "chatbots"
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
