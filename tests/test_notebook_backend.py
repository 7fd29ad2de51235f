"""In a real Jupyter kernel, importing our plots leaves the inline backend on: our figures and the user's display.

Issue 17: importing the plot modules used to call ``matplotlib.use("Agg")``, which switched a notebook's inline
backend off, so neither our figures nor the user's own ``plt.show()`` displayed. The kernel here is the real
ipykernel of this interpreter (``jupyter_client``), talking over loopback only.
"""

from __future__ import annotations

import json
import queue
import sys

import pytest

jupyter_client = pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

CODE_IMPORT = """
%matplotlib inline
import matplotlib
import ra_model.plots.timecourse, ra_model.plots.cohort, ra_model.plots.sensitivity
print("BACKEND", matplotlib.get_backend())
"""

CODE_OURS = """
from ra_model import simulate, plot_timecourse
table = simulate("healthy", None, t_end_d=2.0)
plot_timecourse([table], labels=["healthy"])
"""

CODE_USERS = """
import matplotlib.pyplot as plt
plt.plot([0, 1], [1, 0])
plt.show()
"""


def _run(client: object, code: str, *, timeout_s: float = 600.0) -> list[dict]:
    """Execute ``code`` and return the iopub messages of that execution, up to its idle status."""
    msg_id = client.execute(code)  # type: ignore[attr-defined]
    messages: list[dict] = []
    while True:
        try:
            msg = client.get_iopub_msg(timeout=timeout_s)  # type: ignore[attr-defined]
        except queue.Empty:  # pragma: no cover - a hung kernel fails the test with what it said
            pytest.fail(f"kernel gave no answer in {timeout_s} s; messages so far: {messages}")
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        messages.append(msg)
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            return messages


def _pngs(messages: list[dict]) -> int:
    return sum(
        1
        for m in messages
        if m["msg_type"] in {"display_data", "execute_result"} and "image/png" in m["content"]["data"]
    )


def _errors(messages: list[dict]) -> list[str]:
    return [f"{m['content']['ename']}: {m['content']['evalue']}" for m in messages if m["msg_type"] == "error"]


@pytest.fixture()
def kernel(tmp_path):
    """A fresh kernel per test (an import that switches the backend happens once per process), run by this
    interpreter whatever kernels the machine has installed."""
    spec_dir = tmp_path / "kernels" / "ra_model_test"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec_dir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "ra_model test", "language": "python"})
    )
    specs = jupyter_client.kernelspec.KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
    manager = jupyter_client.KernelManager(kernel_name="ra_model_test", kernel_spec_manager=specs)
    manager.start_kernel(cwd=str(tmp_path))  # not the checkout: the installed package, as a user has it
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=120)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_importing_the_plots_keeps_the_inline_backend(kernel) -> None:
    messages = _run(kernel, CODE_IMPORT)
    assert not _errors(messages), _errors(messages)
    text = "".join(m["content"].get("text", "") for m in messages if m["msg_type"] == "stream")
    assert "BACKEND" in text
    assert "inline" in text.split("BACKEND", 1)[1].lower(), text


def test_our_figure_displays_inline(kernel) -> None:
    _run(kernel, CODE_IMPORT)
    messages = _run(kernel, CODE_OURS)
    assert not _errors(messages), _errors(messages)
    assert _pngs(messages) == 1


def test_the_users_own_pyplot_figure_still_displays(kernel) -> None:
    _run(kernel, CODE_IMPORT)
    messages = _run(kernel, CODE_USERS)
    assert not _errors(messages), _errors(messages)
    assert _pngs(messages) == 1
