"""The one exception type the command line turns into a one-line message and exit code 2."""


class InputError(ValueError):
    """Bad input or options: a missing file, a malformed mask or store, inconsistent shapes.

    The message names the file or image and the problem in one line; the CLI prints it
    as ``error: <message>`` and exits with code 2 without writing any output file.
    """
