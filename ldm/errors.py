"""The one exception type whose message is meant for users."""


class LdmError(Exception):
    """A user-facing error: its message is the one line the CLI prints."""
