"""An archive's metadata describes the archive itself, as libcombine reads it (issue 17).

Before, metadata.rdf described ``http://omex-library.org/ra_model.omex``, so
``CombineArchive.getMetadataForLocation(".")`` found nothing. The expected values come from
``models/annotations.toml``, not from the writer.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from ra_model.interop.omex import Scenario, write_omex
from ra_model.model.source import model_dir

libcombine = pytest.importorskip("libcombine")


def test_the_archive_itself_has_title_description_creators_and_dates(tmp_path: Path) -> None:
    data = tomllib.loads((model_dir() / "annotations.toml").read_text(encoding="utf-8"))["model"]
    path = write_omex(
        tmp_path / "a.omex",
        [Scenario(label="healthy_1d", t_end_d=1.0, output_step_d=1.0)],
        description="one healthy day",
    )
    archive = libcombine.CombineArchive()
    assert archive.initializeFromArchive(str(path))
    meta = archive.getMetadataForLocation(".")
    assert not meta.isEmpty()
    assert meta.getDescription() == "one healthy day"
    assert meta.getNumCreators() == len(data["creators"])
    creator = meta.getCreator(0)
    assert (creator.getGivenName(), creator.getFamilyName()) == (
        data["creators"][0]["given"],
        data["creators"][0]["family"],
    )
    assert creator.getOrganization() == data["creators"][0]["organisation"]
    assert meta.getCreated().getDateAsString() == data["created"]
    assert meta.getNumModified() == 1 and meta.getModified(0).getDateAsString() == data["modified"]
