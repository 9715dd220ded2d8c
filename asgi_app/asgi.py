"""ASGI entry point: `asgi_app.asgi:application`."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "asgi_app.settings")
django.setup(set_prefix=False)  # what django.core.asgi.get_asgi_application() does

from asgi_app.fastpath import FastPathApp  # noqa: E402  (needs Django set up)
from asgi_app.handler import PooledThreadASGIHandler  # noqa: E402  (needs Django set up)
from asgi_app.lifespan import LifespanApp  # noqa: E402  (needs Django set up first)
from asgi_app.limits import BodySizeLimitMiddleware  # noqa: E402
from asgi_app.staticfiles import StaticFilesApp  # noqa: E402

django_application = PooledThreadASGIHandler()
# The fast path sits inside the body limits (it answers only bodiless requests anyway) and
# hands Django everything it does not answer exactly as Django would (asgi_app/fastpath.py).
application = LifespanApp(StaticFilesApp(BodySizeLimitMiddleware(FastPathApp(django_application))))
