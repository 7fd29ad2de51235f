"""User code in spec files runs only when the user names its module; reading a spec never imports it.

Also the sweep spec's own bad inputs through the CLI: TOML syntax, malformed metric names, non-numeric
ranges and fill values, each a one-line message with exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import tomli_w

from ra_model.cli import main
from ra_model.errors import InvalidValueError
from ra_model.studies.design import load_sweep_spec
from ra_model.studies.metrics import resolve_metric

PLUGIN = """
from pathlib import Path
Path(__file__).with_name("imported.marker").write_text("ran", encoding="utf-8")


def peak(table):
    return float(table["ejaculate_concentration_M_per_mL"].max())
"""


def _spec(tmp_path: Path, **changes: object) -> Path:
    data: dict[str, object] = {
        "design": "random",
        "n": 2,
        "seed": 1,
        "phenotype": "maturation_arrest",
        "regimen": "20 mg bid for 10 d",
        "t_end_d": 12.0,
        "metrics": ["responder"],
        "parameters": {"cyp26_expr": [2.0, 5.0]},
    }
    data.update(changes)
    path = tmp_path / "spec.toml"
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A module ``ra_probe_plugin`` on sys.path that leaves a marker file when it is imported."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "ra_probe_plugin.py").write_text(PLUGIN, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "ra_probe_plugin", raising=False)  # imported afresh in each test
    return folder / "imported.marker"


def test_reading_a_spec_never_imports_its_metric_module(tmp_path: Path, plugin: Path) -> None:
    spec = load_sweep_spec(_spec(tmp_path, metrics=["ra_probe_plugin:peak"]))
    assert spec.metrics == ("ra_probe_plugin:peak",) or list(spec.metrics) == ["ra_probe_plugin:peak"]
    assert not plugin.exists()


def test_an_unlisted_module_is_refused_naming_the_plugin_flag(plugin: Path) -> None:
    with pytest.raises(InvalidValueError, match="--plugin ra_probe_plugin"):
        resolve_metric("ra_probe_plugin:peak")
    assert not plugin.exists()


def test_a_listed_module_is_imported_and_runs(plugin: Path) -> None:
    metric = resolve_metric("ra_probe_plugin:peak", plugins=["ra_probe_plugin"])
    assert callable(metric) and plugin.exists()


def test_the_package_s_own_metrics_need_no_plugin() -> None:
    from ra_model.studies import metrics

    assert resolve_metric("ra_model.studies.metrics:responder") is metrics.responder


def test_the_cli_refuses_then_runs_with_plugin(
    tmp_path: Path, plugin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _spec(tmp_path, metrics=["ra_probe_plugin:peak"])
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--workers", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--plugin ra_probe_plugin" in err and "Traceback" not in err
    assert not plugin.exists()
    args = ["sweep", str(path), "--out", str(out), "--workers", "1", "--quiet", "--plugin", "ra_probe_plugin"]
    assert main(args) == 0
    assert plugin.exists()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"metrics": [":foo"]}, "':foo'"),
        ({"metrics": ["os.path:"]}, "'os.path:'"),
        ({"metrics": ["a b:c"]}, "'a b:c'"),
        ({"parameters": {"cyp26_expr": ["low", "high"]}}, "cyp26_expr"),
        ({"design": "sobol", "fill_nan": {"responder": "lots"}}, "fill_nan"),
    ],
    ids=["empty-module", "empty-function", "space", "non-numeric-range", "non-numeric-fill"],
)
def test_bad_spec_values_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], changes: dict[str, object], named: str
) -> None:
    code = main(["sweep", str(_spec(tmp_path, **changes)), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err and named in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("raw", [b"n = = 2\n", b'description = "caf\xe9"\n'], ids=["toml-syntax", "not-utf8"])
def test_unreadable_spec_files_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], raw: bytes
) -> None:
    path = tmp_path / "spec.toml"
    path.write_bytes(raw)
    for command in ("sweep", "sensitivity"):
        code = main([command, str(path), "--out", str(tmp_path / "out"), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and str(path) in err
