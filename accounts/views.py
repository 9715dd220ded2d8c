from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from accounts import selectors, services
from accounts.permissions import IsAdmin
from accounts.serializers import (
    LoginSerializer,
    RefreshSerializer,
    RegisterResponseSerializer,
    RegisterSerializer,
    TokenPairSerializer,
    UserSerializer,
)
from accounts.throttles import (
    LoginIPThrottle,
    LoginUsernameThrottle,
    RefreshIPThrottle,
    RefreshUserThrottle,
    RegisterIPThrottle,
)
from asgi_app.pagination import page_body, page_params
from asgi_app.schema import ERRORS, LIST_PARAMS, paginated
from asgi_app.views import ApiView, validated


class RegisterView(ApiView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [RegisterIPThrottle]

    @extend_schema(
        request=RegisterSerializer,
        responses={201: RegisterResponseSerializer, **ERRORS(400, 413, 415, 429, 503)},
        auth=[],
        summary="Register; returns the user and a token pair.",
    )
    async def post(self, request):
        user, pair = await services.user_register(**validated(RegisterSerializer, request))
        return Response({"user": UserSerializer(user).data, **pair}, status=status.HTTP_201_CREATED)


class LoginView(ApiView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [LoginIPThrottle, LoginUsernameThrottle]

    @extend_schema(
        request=LoginSerializer,
        responses={200: TokenPairSerializer, **ERRORS(400, 401, 413, 415, 429, 503)},
        auth=[],
        summary="Log in with username and password; returns a token pair.",
    )
    async def post(self, request):
        return Response(await services.user_login(**validated(LoginSerializer, request)))


class RefreshView(ApiView):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [RefreshIPThrottle, RefreshUserThrottle]

    @extend_schema(
        request=RefreshSerializer,
        responses={200: TokenPairSerializer, **ERRORS(400, 401, 413, 415, 429, 503)},
        auth=[],
        summary="Rotate a refresh token: the old one is blacklisted.",
    )
    async def post(self, request):
        return Response(await services.tokens_refresh(**validated(RefreshSerializer, request)))


class LogoutView(ApiView):
    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=RefreshSerializer,
        responses={
            205: OpenApiResponse(description="Logged out; the refresh token is blacklisted."),
            **ERRORS(400, 401, 413, 415, 503),
        },
        auth=[],
        summary="Log out: blacklist a refresh token.",
    )
    async def post(self, request):
        await services.token_logout(**validated(RefreshSerializer, request))
        return Response(status=status.HTTP_205_RESET_CONTENT)


class MeView(ApiView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={200: UserSerializer, **ERRORS(401, 503)}, summary="The caller's own user."
    )
    async def get(self, request):
        user = await selectors.user_get_active(user_id=request.user.id)
        if user is None:
            raise AuthenticationFailed(
                "User is inactive or no longer exists.", code="user_inactive"
            )
        return Response(UserSerializer(user).data)


class UserListView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        parameters=[
            OpenApiParameter("search", str, description="Matches username, email or phone."),
            *LIST_PARAMS,
        ],
        responses={200: paginated(UserSerializer), **ERRORS(401, 403, 503)},
        operation_id="users_list",
        summary="List and search users (admin only).",
    )
    async def get(self, request):
        page = page_params(request)
        search = request.query_params.get("search", "").replace("\x00", "")[:254]
        count, users = await selectors.user_list(
            search=search, limit=page.limit, offset=page.offset
        )
        return Response(page_body(request, page, count, UserSerializer(users, many=True).data))
