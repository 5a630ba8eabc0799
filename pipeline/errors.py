"""The one exception a stage raises for a bad input row: it becomes a quarantine row with its reason."""


class RowError(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
