"""`testtime --help` and every subcommand's help work, and the help lists every registered strategy and scorer."""

from __future__ import annotations

import pytest

from testtime.cli import COMMANDS, main
from testtime.scorers import CONFIDENCE_METRICS, SCORERS
from testtime.strategies import STRATEGIES


@pytest.mark.parametrize("argv", [["--help"]] + [[c, "--help"] for c in COMMANDS] + [["bench", "spr", "--help"]])
def test_help_exits_zero(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    assert "usage: testtime" in capsys.readouterr().out


def test_help_is_generated_from_the_registries(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert all(name in text for name in STRATEGIES)
    assert all(name in text for name in SCORERS if name != "confidence")
    assert all(m in text for m in CONFIDENCE_METRICS) and "confidence:METRIC" in text
