"""OpenAPI description of the JWT bearer scheme (loaded in AccountsConfig.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenClaimsScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.TokenClaimsAuthentication"
    name = "jwtAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "Access token from /api/auth/login/, sent as `Bearer <access>`.",
        }
