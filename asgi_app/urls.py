from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from asgi_app.views import healthz, readyz, root

urlpatterns = [
    path("", root, name="root"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("api/auth/", include("accounts.urls_auth")),
    path("api/users/", include("accounts.urls_users")),
    path("api/", include("courses.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path(
        "api/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="asgi_app/redoc.html"),
        name="redoc",
    ),
    path("admin/", admin.site.urls),
    path("console/", include("console.urls")),
]
urlpatterns += [path("bench/", include("asgi_app.bench_views"))]  # empty unless BENCH_ENDPOINTS=1

handler404 = "asgi_app.views.not_found"
handler500 = "asgi_app.views.server_error"
