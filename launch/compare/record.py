"""The state file of a compare or bisect run: one JSON document, rewritten atomically (and
fsynced) after every step, so an interrupted run can be read and resumed."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fabkit import inputs
from fabkit.atomic import write_atomic
from fabkit.errors import InputError


@dataclass
class Record:
    path: Path
    doc: dict[str, Any] = field(default_factory=dict)
    durable: bool = True
    """fsync every save (a run of hours must survive a crash; a simulation need not)"""

    def save(self) -> None:
        self.doc["updated_at"] = _dt.datetime.now(tz=_dt.UTC).isoformat(timespec="seconds")
        write_atomic(self.path, json.dumps(self.doc, indent=2, sort_keys=True) + "\n",
                     fsync=self.durable)

    def set(self, **kw: Any) -> None:
        self.doc.update(kw)
        self.save()


def open_record(path: Path, *, schema: str, key: str, asked: Any, fresh: dict[str, Any],
                what: str, hint: str, durable: bool = True) -> tuple[Record, bool]:
    """The record at path when it holds the same question (doc[key] == asked), else a new
    one (schema, key and `fresh` fields; not written yet). (record, resumed)."""
    if path.is_file():
        doc = inputs.load_json_file(path, what=what)
        if not isinstance(doc, dict) or doc.get("schema") != schema or doc.get(key) != asked:
            raise InputError(f"{path}: another {what.split()[0]} is recorded here", hint=hint)
        return Record(path, doc, durable), True
    path.parent.mkdir(parents=True, exist_ok=True)
    return Record(path, {"schema": schema, key: asked, **fresh}, durable), False
