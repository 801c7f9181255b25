"""WSGI entry point of the notes example."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notes_django.settings")
application = get_wsgi_application()
