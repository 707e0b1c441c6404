"""The one exception type the CLI turns into a one-line message and a non-zero exit."""


class VaeedofError(Exception):
    """A user-facing error: bad input, bad parameters, failed verification.

    The message must name the file or key at fault and the problem, on one line.
    """
