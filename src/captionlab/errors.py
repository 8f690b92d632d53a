"""One exception type for problems the user can fix (bad input, bad option, missing file).

Entry points print these as a single line and exit with status 2; anything else is a bug and
keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input: the message names the thing and what to do."""


def require_int(value: object, name: str, minimum: int) -> int:
    """`value` if it is a whole number >= `minimum`, else a UserError naming the option."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{name}={value!r}: give a whole number >= {minimum}")
    return value


class OptionError(UserError, ValueError):
    """A bad value of one option (e.g. search.top_p=1.5): a UserError (one line for the user) and a
    ValueError (what Python code calling the constructor expects)."""
