"""What a verbose search shows while it runs: a tqdm bar over the candidates, and a line per generation.

Every line goes through ``tqdm.write``, so it never splits the bar.
"""

import time

from tqdm.auto import tqdm

from . import results

__all__ = ["Progress", "remaining"]


def remaining(n, total, rate, elapsed, max_time, per_generation):
    """Seconds the progress bar shows as remaining, or None when unknown.

    tqdm's estimate, ``(total - n) / rate`` candidates at ``rate`` per second,
    assumes every generation runs; with ``max_time`` the search stops after
    the generation during which ``max_time`` seconds passed (``elapsed`` have),
    so the estimate is capped by the time left, or, once that is spent, by the
    time the current generation of ``per_generation`` candidates needs to end.
    """
    estimate = (total - n) / rate if rate else None
    if max_time is None:
        return estimate
    generation_left = (-n % per_generation) / rate if rate else 0.0
    cap = max(max_time - elapsed, generation_left)
    return cap if estimate is None else min(estimate, cap)


class _Bar(tqdm):
    """The search's tqdm bar; its ``{left}`` field is :func:`remaining`, capped by ``max_time``."""

    def __init__(self, *args, start, max_time, per_generation, **kwargs):
        self._search_start, self._max_time, self._per_generation = start, max_time, per_generation
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self):
        d = super().format_dict
        left = remaining(d.get("n") or 0, d.get("total") or 0, d.get("rate"), time.perf_counter() - self._search_start,
                         self._max_time, self._per_generation)
        return {**d, "left": "?" if left is None else self.format_interval(left)}


class Progress:
    """A verbose search's output: the bar (over proposed candidates, fractions of one accepted) and its lines.

    Quiet (``verbose=0``) it shows nothing. Call it with the number of
    candidates dealt with; :meth:`generation` prints a generation's line
    (and, at ``verbose >= 2``, the hall of fame); :meth:`close` ends the bar.
    """

    def __init__(self, verbose, population_size, generations, generation, start, max_time):
        self.verbose, self.generations, self.max_time = verbose, generations, max_time
        self.bar = None
        if verbose:
            self.bar = _Bar(total=population_size * generations, initial=population_size * generation,
                            unit="candidate", desc="LossSearchCV", dynamic_ncols=True, leave=True,
                            disable=None,  # no bar when stderr is not a terminal (logs): the lines alone
                            bar_format="{l_bar}{bar}| {n}/{total} [{elapsed}<{left}]",
                            start=start, max_time=max_time, per_generation=population_size)
        self.done = float(self.bar.n) if self.bar is not None else 0.0

    def __call__(self, n):
        if self.bar is None:
            return
        self.done += n
        self.bar.update(min(int(round(self.done, 6)), self.bar.total) - self.bar.n)

    def generation(self, entry, rows, hall_of_fame):
        """Report one generation's ``entry`` of ``history_``; ``rows``: the evaluator's rows."""
        if not self.verbose:
            return
        tqdm.write(results.generation_line(entry, self.generations, self.max_time))
        if self.verbose >= 2:
            for rank, best in enumerate(results.hall_of_fame(rows, hall_of_fame), 1):
                tqdm.write(f"    {rank:>2}. {best['mean_test_score']:.4f}  {best['infix']}")

    def write(self, line):
        if self.verbose:
            tqdm.write(line)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
