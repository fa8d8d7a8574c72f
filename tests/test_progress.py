"""metaloss_sk.progress: the progress bar and its remaining time."""

import sys
import time

import pytest


def test_the_progress_bars_remaining_time_is_capped_by_max_time(monkeypatch):
    import io

    from metaloss_sk.progress import Progress
    from metaloss_sk.progress import remaining as _remaining

    rate = 1 / 1.4  # candidates per second; 25 a generation, 50 generations, one done after 35 s
    assert _remaining(25, 1250, rate, 35.0, None, 25) == pytest.approx(1715.0)  # tqdm's own estimate
    assert _remaining(25, 1250, rate, 35.0, 240, 25) == pytest.approx(205.0)  # what max_time=240 leaves
    assert _remaining(1240, 1250, rate, 35.0, 240, 25) == pytest.approx(14.0)  # less than that to go
    assert _remaining(260, 1250, rate, 250.0, 240, 25) == pytest.approx(15 * 1.4)  # the generation ends
    assert _remaining(0, 1250, None, 10.0, 240, 25) == pytest.approx(230.0)  # no rate measured yet
    assert _remaining(0, 1250, None, 10.0, None, 25) is None

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())  # the bar shows on terminals only
    # verbose=1, max_time=240, population_size=25, generations=50; 35 s after fit started, one generation done
    bar = Progress(1, 25, 50, 1, time.perf_counter() - 35.0, 240).bar
    bar.close()
    assert str(bar).endswith(("25/1250 [00:00<03:25]", "25/1250 [00:00<03:24]"))
