"""Every module of the code base sits on exactly one floor of the import contract.

``make lint`` runs the contracts (lint-imports, pyproject's [tool.importlinter]); a module that no
layer names would escape them, so a new module must be placed on a floor here first.
"""

from __future__ import annotations

import pkgutil
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def _layers() -> list[str]:
    (contract,) = [c for c in _config()["contracts"] if c["type"] == "layers"]
    return [m.strip() for layer in contract["layers"] for m in layer.replace("|", ":").split(":")]


def _modules(package: str) -> list[str]:
    names = [package]
    for info in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}."):
        names.append(info.name)
    return names


def _floors(module: str, layers: list[str]) -> list[str]:
    return [layer for layer in layers if module == layer or module.startswith(f"{layer}.")]


def test_every_module_is_on_exactly_one_floor():
    layers = _layers()
    unplaced, twice = [], []
    for package in _config()["root_packages"]:
        for module in _modules(package):
            floors = _floors(module, layers)
            if module == package and package not in layers:
                continue  # the package itself (its __init__) holds no code of a floor
            if not floors:
                unplaced.append(module)
            elif len(floors) > 1:
                twice.append((module, floors))
    assert not unplaced, f"modules on no floor (add them to a layer in pyproject.toml): {unplaced}"
    assert not twice, f"modules on two floors: {twice}"


def test_every_layer_names_a_module():
    modules = {m for package in _config()["root_packages"] for m in _modules(package)}
    assert [layer for layer in _layers() if layer not in modules] == []


def test_the_readme_layout_names_every_module_and_folder():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") : readme.index("## Documentation")]
    missing = [
        module
        for module in _modules("skewless")
        if module != "skewless" and not re.search(rf"[`/]{module.rsplit('.', 1)[1]}\b", layout)
    ]
    folders = ["dags", "feature_repo", "bench", "monitoring", "serving", "models", "dbt_project"]
    missing += [f"{f}/" for f in (*folders, "tests", "docs", "var") if f"`{f}/" not in layout]
    assert not missing, f"README's layout table does not name: {missing}"
