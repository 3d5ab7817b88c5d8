"""The one exception type the command line turns into a one-line message and exit code 2."""


class InputError(ValueError):
    """Bad input or options: a missing file, a malformed mask or store, inconsistent shapes.

    The message names the file or image and the problem in one line; the CLI prints it
    as ``error: <message>`` and exits with code 2 without writing any output file.

    A message that names an option names it as the Python API spells it (``logits=True``);
    ``cli``, when given, is the same message as the command line spells it (``--logits``),
    which the CLI prints instead (:attr:`cli_message`). The library raises the same error
    for both, so no check is written twice.
    """

    def __init__(self, message: str, *, cli: str | None = None):
        super().__init__(message)
        self.cli = cli  # kept by pickling (an exception's __dict__ travels with it)

    @property
    def cli_message(self) -> str:
        """The message as the command line words it."""
        return str(self) if self.cli is None else self.cli


def option_error(name: str, problem: str) -> InputError:
    """An InputError for a bad option value, named ``name`` from the Python API and
    ``--name`` (underscores as dashes) on the command line.

    ``option_error("temperature", "must be a positive number, got 0")`` reads
    ``temperature must be ...`` in Python and ``--temperature must be ...`` in the CLI.
    """
    return InputError(f"{name} {problem}", cli=f"--{name.replace('_', '-')} {problem}")


def one_line(problem: object, empty: str = "") -> str:
    """``problem`` (an exception or text) as one line: white space folded; ``empty`` if blank.

    For quoting another library's error inside an :class:`InputError` message.
    """
    return " ".join(str(problem).split()) or empty
