"""The same project on Django's stock ASGIHandler, for rung 2s.

Everything else (settings, middleware, the bench endpoints) is identical to
`asgi_app.asgi:application`; only `asgi_app.handler.PooledThreadASGIHandler` is replaced
by what `django.core.asgi.get_asgi_application()` returns, so rung 2 versus rung 2s is
what the pooled, lazily-threaded handler buys.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgi_app.settings")

app = get_asgi_application()
