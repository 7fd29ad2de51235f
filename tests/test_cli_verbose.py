"""The -v flag works where the README writes it: before or after the command (issue 17)."""

from __future__ import annotations


def test_verbose_is_accepted_after_the_command_as_the_readme_writes_it(capsys) -> None:  # type: ignore[no-untyped-def]
    from ra_model.cli import main

    assert main(["phenotypes", "-v"]) == 0
    after = capsys.readouterr().out
    assert main(["-v", "phenotypes"]) == 0
    assert capsys.readouterr().out == after and "why:" in after
    assert main(["phenotypes"]) == 0 and "why:" not in capsys.readouterr().out
