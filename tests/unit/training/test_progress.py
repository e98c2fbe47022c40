"""Training progress without a terminal: a plain line at the start, every N seconds and at the end."""

from __future__ import annotations

import logging

from transferkit.training.progress import TrainProgress


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "transferkit"]


def test_piped_output_gets_periodic_lines_with_rate_and_eta(caplog, monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr("transferkit.training.progress.time.perf_counter", lambda: now[0])
    caplog.set_level(logging.INFO, logger="transferkit")
    bar = TrainProgress(10, terminal=False, every=30)
    for step in range(1, 11):
        now[0] += 10  # 10 s per step, 32 samples per step
        if step == 5:
            bar.note("val f1_macro 0.8123")
        bar.advance(loss=1.0 / step, samples=32)
    bar.close()
    lines = _lines(caplog)
    # started, after 30 s (step 3), 60 s (6), 90 s (9), and done
    assert len(lines) == 5, lines
    assert lines[0].startswith("training: step 0/10 (0%)") and lines[0].endswith("started")
    assert "step 3/10 (30%) loss 0.3333" in lines[1] and "3.2 samples/s" in lines[1]
    assert "0:30 elapsed, eta 1:10" in lines[1]
    assert "val f1_macro 0.8123" in lines[2]
    assert lines[-1].startswith("training: step 10/10 (100%)") and lines[-1].endswith("done")
    assert "eta 0:00" in lines[-1]


def test_a_resumed_run_counts_its_eta_from_the_steps_it_runs(caplog, monkeypatch) -> None:
    now = [0.0]
    monkeypatch.setattr("transferkit.training.progress.time.perf_counter", lambda: now[0])
    caplog.set_level(logging.INFO, logger="transferkit")
    bar = TrainProgress(100, terminal=False, every=1, completed=90)
    now[0] += 5
    bar.advance(loss=0.5, samples=8)
    assert "step 91/100 (91%)" in _lines(caplog)[-1] and "eta 0:45" in _lines(caplog)[-1]


def test_disabled_progress_is_silent(caplog) -> None:
    caplog.set_level(logging.INFO, logger="transferkit")
    bar = TrainProgress(5, enabled=False)
    bar.advance(loss=0.1, samples=4)
    bar.note("x")
    bar.close()
    assert _lines(caplog) == []
