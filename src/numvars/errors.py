"""One error type for user mistakes; its message names the problem and the fix."""


class NumvarsError(ValueError):
    """A mistake in user input (a name, a size, a file). The CLI prints it on one line."""
