"""Shared fixtures: the model is compiled once per test session."""

from __future__ import annotations

import pytest

from ra_model.engines.engine import Engine
from ra_model.engines.simulate import default_engine


@pytest.fixture(scope="session")
def engine() -> Engine:
    return default_engine()
