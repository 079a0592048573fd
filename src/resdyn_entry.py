"""The ``resdyn`` console script, outside the resdyn package so that it runs before any import.

Importing the package (torch, scipy, click) takes seconds; a Ctrl-C then gives one line and
exit status 130, as a Ctrl-C later does, instead of a traceback. A library may swallow the
KeyboardInterrupt of its own half-done import and fail later with another error (numpy's
``AttributeError``, a ``RecursionError``): a Ctrl-C seen during the imports is reported as such
whatever error follows.
"""

import signal
import sys


def main() -> None:
    """Run the ``resdyn`` command line (``resdyn.cli.app``)."""
    seen: list[int] = []
    default = signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def ctrl_c(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    if default:  # not where Ctrl-C is ignored (a background job, nohup)
        signal.signal(signal.SIGINT, ctrl_c)
    try:
        from resdyn.cli import app
    except BaseException:
        if not seen:
            raise
    finally:
        if default:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if seen:
        sys.stderr.write("interrupted: nothing was computed yet\n")
        sys.exit(130)
    try:
        app(prog_name="resdyn")
    except KeyboardInterrupt:  # between the commands' own handling (cli.OneLineErrors)
        sys.stderr.write("interrupted\n")
        sys.exit(130)
