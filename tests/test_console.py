"""Under several processes, the setup's notes and warnings are printed by rank 0 alone."""

from __future__ import annotations

import sys

import pytest

from ssl_core import console


def say(text: str) -> None:
    print(text, file=sys.stderr)


def test_other_ranks_hold_back_setup_lines_until_training_starts(monkeypatch, capsys):
    monkeypatch.setenv("RANK", "1")
    console.quiet_setup()
    console.quiet_setup()  # once only: a second call does not wrap twice
    say("note: optim.warmup_epochs=10 is 220 of the run's 132 steps")
    say("warning: backbone=resnet18.a1_in1k names timm's pretrained weights")
    say("error: data.path=/nope does not exist")
    sys.stderr.write("kNN top-1 at ")
    sys.stderr.flush()  # a line that can no longer become a setup line is not held
    sys.stderr.write("initialization: 0.75\nnote")  # held: it may become a note
    console.setup_done()
    say(": recovered")  # after the setup, the rest of that line is the process's own
    say("warning: cannot read image a.jpg (truncated)")
    assert capsys.readouterr().err == (
        "error: data.path=/nope does not exist\n"
        "kNN top-1 at initialization: 0.75\n"
        "note: recovered\n"
        "warning: cannot read image a.jpg (truncated)\n"
    )


@pytest.mark.parametrize("rank", [None, "0"])
def test_rank_0_and_a_single_process_print_everything(monkeypatch, capsys, rank):
    if rank is None:
        monkeypatch.delenv("RANK", raising=False)
    else:
        monkeypatch.setenv("RANK", rank)
    console.quiet_setup()
    say("note: a")
    say("warning: b")
    console.setup_done()
    assert capsys.readouterr().err == "note: a\nwarning: b\n"
