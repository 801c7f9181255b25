"""URLs of the notes example; 2FApi's own endpoints need none."""

from django.urls import path

from . import views

urlpatterns = [
    path("notes", views.notes),
    path("notes/<int:note_id>", views.note),
    path("public/hello", views.hello),
    path("v1/resources/<str:resource_id>", views.resource),
]
