"""One image's outcome, and its two on-disk shapes (a JSON Lines object, a Parquet row)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

#: Parquet columns, in order; ``result`` holds the JSON text of the result object
PARQUET_COLUMNS = ("path", "status", "result", "error_type", "error_message")


@dataclass(frozen=True)
class Record:
    """``path`` is relative to SOURCE (POSIX; ``sources.display_path``: always valid UTF-8);
    ``result`` is the task's JSON object when ok."""

    path: str
    status: Literal["ok", "error"]
    result: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None

    @classmethod
    def ok(cls, path: str, result: dict[str, Any]) -> Record:
        return cls(path, "ok", result=result)

    @classmethod
    def failed(cls, path: str, error_type: str, message: str) -> Record:
        return cls(path, "error", error_type=error_type, error_message=message)

    def to_json(self) -> dict[str, Any]:
        """``{"path", "status": "ok", "result": {...}}`` or
        ``{"path", "status": "error", "error": {"type", "message"}}``."""
        if self.status == "ok":
            return {"path": self.path, "status": "ok", "result": self.result}
        return {"path": self.path, "status": "error",
                "error": {"type": self.error_type, "message": self.error_message}}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Record:
        if obj["status"] == "ok":
            return cls.ok(obj["path"], obj["result"])
        err = obj.get("error") or {}
        return cls.failed(obj["path"], err.get("type", ""), err.get("message", ""))

    def to_row(self) -> dict[str, str | None]:
        return {"path": self.path, "status": self.status,
                "result": json.dumps(self.result, separators=(",", ":")) if self.result is not None else None,
                "error_type": self.error_type, "error_message": self.error_message}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        result = json.loads(row["result"]) if row.get("result") else None
        return cls(row["path"], row["status"], result, row.get("error_type"), row.get("error_message"))
