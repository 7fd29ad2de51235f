"""The package's rooms and the rules between them, read from every module's imports (lazy ones too).

model <- engines <- studies <- (interop, plots, app) <- cli; errors is beneath them all. Only engines
touch libroadrunner; only plots and app touch matplotlib, Panel and Bokeh; only cli touches argv.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ra_model"

#: Floor of each room: a module may import rooms on its own floor or below, never above.
FLOOR = {"errors": 0, "model": 1, "engines": 2, "studies": 3, "interop": 4, "plots": 4, "app": 4, "cli": 5}
#: Rooms on one floor that must not import each other.
SIBLINGS = {"interop", "plots", "app"}
#: Third-party packages and the only rooms allowed to import them. Other tools' simulators (COPASI
#: through basico, tellurium's SED-ML runner) are interop's: they cross-check the export, not run studies.
ONLY_IN = {
    "roadrunner": {"engines"},
    "tellurium": {"interop"},
    "basico": {"interop"},
    "matplotlib": {"plots"},
    "panel": {"app"},
    "bokeh": {"app"},
    "param": {"app"},
    "argparse": {"cli"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def _room(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module name an import statement in the file names, with its line (relative imports resolved)."""
    package = ".".join(("ra_model", *path.relative_to(PACKAGE).parent.parts))
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _imports_in(text: str, package: str) -> list[tuple[int, str]]:
    tree = ast.parse(text)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.append((node.lineno, base))
            # "from ra_model import studies" names a room through the package itself
            if base == "ra_model":
                found += [(node.lineno, f"ra_model.{alias.name}") for alias in node.names]
    return found


def test_every_module_stands_in_a_known_room() -> None:
    rooms = {_room(p) for p in _modules()}
    assert rooms <= set(FLOOR), f"modules outside the known rooms: {sorted(rooms - set(FLOOR))}"
    assert {"model", "engines", "studies", "interop", "plots", "app", "cli"} <= rooms


def test_no_room_imports_a_higher_room_or_a_sibling() -> None:
    problems = []
    for path in _modules():
        room = _room(path)
        for line, name in _imports(path):
            parts = name.split(".")
            if parts[0] != "ra_model" or len(parts) < 2 or parts[1].startswith("_"):
                continue
            target = parts[1]
            if target not in FLOOR:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}, which is in no room")
            elif FLOOR[target] > FLOOR[room]:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} ({room}) imports {name} ({target}), a higher room")
            elif room != target and room in SIBLINGS and target in SIBLINGS:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} ({room}) imports {name}, a sibling room")
    assert not problems, "\n".join(problems)


def test_only_the_allowed_rooms_touch_their_libraries() -> None:
    problems = []
    for path in _modules():
        room = _room(path)
        for line, name in _imports(path):
            top = name.split(".")[0]
            if top in ONLY_IN and room not in ONLY_IN[top]:
                problems.append(f"{path.relative_to(PACKAGE)}:{line} ({room}) imports {name}")
    assert not problems, "\n".join(problems)


def test_only_the_cli_reads_argv() -> None:
    problems = []
    for path in _modules():
        if _room(path) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "argv":
                problems.append(f"{path.relative_to(PACKAGE)}:{node.lineno} reads argv")
    assert not problems, "\n".join(problems)


def test_the_rule_checker_sees_lazy_and_relative_imports() -> None:
    """The checks above must see an import inside a function and a relative one (else they prove nothing)."""
    text = "def f():\n    from ra_model.plots import timecourse\n    from ..cli import main\n    import matplotlib\n"
    names = [name for _, name in _imports_in(text, "ra_model.studies")]
    assert names == ["ra_model.plots", "ra_model.cli", "matplotlib"]


@pytest.mark.parametrize(
    "verb", ["simulate", "Regimen", "run_sweep", "make_design", "run_experiment", "export_sbml", "plot_timecourse"]
)
def test_the_public_face_offers_the_verbs(verb: str) -> None:
    import ra_model

    assert verb in ra_model.__all__
    assert callable(getattr(ra_model, verb))


def test_importing_the_package_does_not_load_matplotlib_or_panel(tmp_path: Path) -> None:
    code = "import sys, ra_model; print(sorted(m for m in ('matplotlib', 'panel', 'bokeh') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    out = run.stdout
    assert out.strip() == "[]"


def test_the_readme_use_example_runs_with_the_public_verbs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    use = readme.split("## Use", 1)[1]
    code = use.split("```python\n", 1)[1].split("```", 1)[0]
    assert "from ra_model import" in code
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md (Use)", "exec"), namespace)
    assert (tmp_path / "run.png").stat().st_size > 10_000
    table = namespace["table"]
    assert table.attrs["units"]["time_d"] == "day"  # type: ignore[attr-defined]
