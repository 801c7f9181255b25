"""ASGI entry point of the notes example."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notes_django.settings")
application = get_asgi_application()
