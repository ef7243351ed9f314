"""The one error type users see: a problem and its fix, printed on one line by the CLI."""


class SmlmdnError(Exception):
    """A user-facing error: ``problem`` says what is wrong, ``fix`` says what to do about it."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} (fix: {fix})" if fix else problem)

    def one_line(self) -> str:
        """Return the message as printed by the CLI: ``problem; fix``."""
        text = self.problem.rstrip(".")
        return f"{text}. Fix: {self.fix}" if self.fix else text
