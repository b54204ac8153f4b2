"""The one exception type for errors a user can cause."""


class KskelError(Exception):
    """A problem with user input: a path, a record, a flag or a checkpoint.

    The message says what was wrong, where (file, record index, flag) and,
    when it is not obvious, what to do about it. Command-line tools print it
    as one line and exit with status 1.
    """
