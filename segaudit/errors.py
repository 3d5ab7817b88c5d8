"""The one exception type the command line turns into a one-line message and exit code 2."""


class InputError(ValueError):
    """Bad input or options: a missing file, a malformed mask or store, inconsistent shapes.

    The message names the file or image and the problem in one line; the CLI prints it
    as ``error: <message>`` and exits with code 2 without writing any output file.
    """


def one_line(problem: object, empty: str = "") -> str:
    """``problem`` (an exception or text) as one line: white space folded; ``empty`` if blank.

    For quoting another library's error inside an :class:`InputError` message.
    """
    return " ".join(str(problem).split()) or empty
