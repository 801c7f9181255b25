"""A notes API on FastAPI, guarded by 2FApi.

Every route needs an access token except ``GET /public/hello`` (excluded in
the settings) and the docs. Each client sees only its own notes. The notes
live in memory; only the 2FApi state goes to the configured storage.
"""

from __future__ import annotations

import itertools
import re
import threading
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from twofapi_middleware import Settings
from twofapi_middleware.integrations.fastapi import CurrentPrincipal, install

RESOURCE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
PUBLIC_PATHS = ("/public/hello",)


class NoteIn(BaseModel):
    text: str


class Note(BaseModel):
    id: int
    owner: str
    text: str


class NoteList(BaseModel):
    notes: list[Note]


class Notes:
    """Notes in memory, each readable by its owner only."""

    def __init__(self) -> None:
        self._notes: dict[int, Note] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, owner: str, text: str) -> Note:
        with self._lock:
            note = Note(id=next(self._ids), owner=owner, text=text)
            self._notes[note.id] = note
        return note

    def of(self, owner: str) -> list[Note]:
        with self._lock:
            return [note for note in self._notes.values() if note.owner == owner]

    def get(self, owner: str, note_id: int) -> Note | None:
        note = self._notes.get(note_id)
        # Another client's note does not exist, as far as this client knows.
        return note if note is not None and note.owner == owner else None


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app; ``settings`` default to the ``TWOFAPI_*`` variables."""
    app = FastAPI(title="Notes", summary="A notes API behind 2FApi")
    settings = settings or Settings.from_env()
    install(
        app, settings.replace(exclude_paths=(*settings.exclude_paths, *PUBLIC_PATHS))
    )
    notes = Notes()

    @app.post("/notes", status_code=201)
    def create_note(note: NoteIn, principal: CurrentPrincipal) -> Note:
        return notes.add(principal.client_id, note.text)

    @app.get("/notes")
    def list_notes(principal: CurrentPrincipal) -> NoteList:
        return NoteList(notes=notes.of(principal.client_id))

    @app.get("/notes/{note_id}")
    def read_note(note_id: int, principal: CurrentPrincipal) -> Note:
        note = notes.get(principal.client_id, note_id)
        if note is None:
            raise HTTPException(404, "not found")
        return note

    @app.get("/public/hello")
    def hello() -> dict[str, str]:
        return {"message": "Hello, world"}

    @app.get("/v1/resources/{resource_id}")
    def resource(resource_id: str, principal: CurrentPrincipal) -> dict[str, Any]:
        if not RESOURCE_ID.fullmatch(resource_id):
            raise HTTPException(404, "not found")
        return {
            "resourceId": resource_id,
            "clientIdentifier": principal.client_id,
            "audience": principal.audience,
            "data": {},
        }

    return app
