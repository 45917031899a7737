"""The deployable ASGI app: ``uvicorn web.asgi:app`` (see Procfile).

Kept apart from ``web/app.py`` so tests and tools can import the factory without a
production environment; importing this module reads and validates the environment.
"""

from web.app import create_app

app = create_app()
