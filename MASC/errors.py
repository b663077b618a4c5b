"""The one exception type users see: its message says what is wrong and how to fix it."""


class MASCError(ValueError):
    """A problem with the user's input or files; scripts print it on one line and exit with 2."""
