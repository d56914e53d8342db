"""The one exception type whose message is meant for users."""


class LdmError(Exception):
    """A user-facing error: its message is the one line the CLI prints."""


def quoted(value, longest: int = 60) -> str:
    """repr(value) for a message, cut to about `longest` characters: a user's 100,000-character input is
    named, not repeated."""
    text = repr(value)
    return text if len(text) <= longest else f"{text[:longest]}… ({len(str(value)):,} characters)"
