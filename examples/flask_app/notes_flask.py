"""A notes API on Flask, guarded by 2FApi.

Every view needs an access token except ``GET /public/hello``, marked
``@public``. Each client sees only its own notes. The notes live in memory;
only the 2FApi state goes to the configured storage.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Mapping
from typing import Any

from flask import Flask, request

from twofapi_middleware.integrations.flask import (
    FlaskTwoFApi,
    current_principal,
    public,
)

RESOURCE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class Notes:
    """Notes in memory, each readable by its owner only."""

    def __init__(self) -> None:
        self._notes: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, owner: str, text: str) -> dict[str, Any]:
        with self._lock:
            note = {"id": next(self._ids), "owner": owner, "text": text}
            self._notes[note["id"]] = note
        return note

    def of(self, owner: str) -> list[dict[str, Any]]:
        with self._lock:
            return [note for note in self._notes.values() if note["owner"] == owner]

    def get(self, owner: str, note_id: int) -> dict[str, Any] | None:
        note = self._notes.get(note_id)
        # Another client's note does not exist, as far as this client knows.
        return note if note is not None and note["owner"] == owner else None


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """The app; ``config`` may hold ``TWOFAPI_*`` settings."""
    app = Flask(__name__)
    app.config.update(config or {})
    FlaskTwoFApi(app)
    notes = Notes()

    @app.post("/notes")
    def create_note() -> Any:
        data = request.get_json(silent=True)
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            return {"error": "send a JSON object with a string 'text'"}, 400
        return notes.add(current_principal.client_id, data["text"]), 201

    @app.get("/notes")
    def list_notes() -> Any:
        return {"notes": notes.of(current_principal.client_id)}

    @app.get("/notes/<int:note_id>")
    def read_note(note_id: int) -> Any:
        note = notes.get(current_principal.client_id, note_id)
        if note is None:
            return {"error": "not found"}, 404
        return note

    @app.get("/public/hello")
    @public
    def hello() -> Any:
        return {"message": "Hello, world"}

    @app.get("/v1/resources/<resource_id>")
    def resource(resource_id: str) -> Any:
        if not RESOURCE_ID.fullmatch(resource_id):
            return {"error": "not found"}, 404
        return {
            "resourceId": resource_id,
            "clientIdentifier": current_principal.client_id,
            "audience": current_principal.audience,
            "data": {},
        }

    return app
