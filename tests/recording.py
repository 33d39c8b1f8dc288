"""A progress bar that remembers what it showed, for tests of the bars `reproduce` and `explain` draw."""
from numvars.jobs.progress import Progress


class Recording(Progress):
    """Keeps every total it showed (`totals`) and its count before `close` credited what was left
    (`before_close`)."""

    def _show(self):
        super()._show()
        self.__dict__.setdefault("totals", []).append(self.total)

    def close(self):
        self.before_close = self.n
        super().close()


def recorder(bars: list):
    """A stand-in for the Progress class that appends each bar it makes to `bars`."""
    def make(*args, **kwargs):
        bars.append(Recording(*args, **kwargs))
        return bars[-1]
    return make
