"""User errors: a bad file, option or checkpoint is one message and a non-zero exit, not a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

TRACEBACK_VARIABLE = "RNN_APPS_TRACEBACK"


class UserError(ValueError):
    """Something the user gave is wrong: the message names it (file and line, option, key) and what was expected.

    A ValueError, so code that already catches those keeps working."""


def check_options(rules: dict[str, tuple[object, bool, str]], group: str = "data") -> None:
    """Raises naming the first option of ``--<group>.*`` that breaks its rule; ``rules``: {name: (value, ok, what is
    expected)}."""
    for name, (value, ok, expected) in rules.items():
        if not ok:
            raise UserError(f"--{group}.{name} is {value!r}; expected {expected}")


def user_message(error: BaseException) -> str:
    """The message of a user error, also when a DataLoader worker re-raised it with the worker's traceback."""
    message = str(error)
    if "Original Traceback" in message:  # torch's ExceptionWrapper: the last line is "<type>: <message>"
        last = message.rstrip().splitlines()[-1]
        message = last.split(": ", 1)[1] if ": " in last else last
    return message


def exit_on_user_error(main: Callable[[], object]) -> None:
    """Runs a command; a UserError ends it with ``error: <message>`` on stderr and exit status 2, unless
    ``RNN_APPS_TRACEBACK=1`` asks for the full traceback. Any other exception is a bug and keeps its traceback."""
    try:
        main()
    except UserError as error:
        if os.environ.get(TRACEBACK_VARIABLE, "") not in ("", "0"):
            raise
        sys.stderr.write(f"error: {user_message(error)}\n(set {TRACEBACK_VARIABLE}=1 for the traceback)\n")
        sys.exit(2)
