"""The Django notes example: settings, URLs and views."""
