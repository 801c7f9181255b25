"""Views of the notes example.

``request.auth`` is the authenticated 2FApi client (a ``Principal``) on
every view but ``hello``, which ``@twofapi_exempt`` opens to everyone.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_http_methods

from twofapi_middleware.integrations.django import twofapi_exempt

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


NOTES = Notes()


@require_http_methods(["GET", "POST"])
def notes(request: HttpRequest) -> JsonResponse:
    owner = request.auth.client_id  # type: ignore[attr-defined]
    if request.method == "GET":
        return JsonResponse({"notes": NOTES.of(owner)})
    try:
        data = json.loads(request.body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return JsonResponse(
            {"error": "send a JSON object with a string 'text'"}, status=400
        )
    return JsonResponse(NOTES.add(owner, data["text"]), status=201)


@require_GET
def note(request: HttpRequest, note_id: int) -> JsonResponse:
    found = NOTES.get(request.auth.client_id, note_id)  # type: ignore[attr-defined]
    if found is None:
        return JsonResponse({"error": "not found"}, status=404)
    return JsonResponse(found)


@require_GET
@twofapi_exempt
def hello(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"message": "Hello, world"})


@require_GET
def resource(request: HttpRequest, resource_id: str) -> JsonResponse:
    if not RESOURCE_ID.fullmatch(resource_id):
        return JsonResponse({"error": "not found"}, status=404)
    principal = request.auth  # type: ignore[attr-defined]
    return JsonResponse(
        {
            "resourceId": resource_id,
            "clientIdentifier": principal.client_id,
            "audience": principal.audience,
            "data": {},
        }
    )
