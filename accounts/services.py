"""Account rules: registration, login, token rotation and revocation."""

from asgiref.sync import sync_to_async
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction

from accounts import tokens
from accounts.models import USERNAME_TAKEN, User, username_key
from accounts.passwords import password_check, password_hash
from common.errors import AuthenticationFailed, FieldErrors, TokenNotValid

EMAIL_TAKEN = "A user with that email already exists."
BAD_CREDENTIALS = "No active account found with the given credentials."


def _uniqueness_errors(username: str, email: str) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    if User.objects.filter(username_key=username_key(username)).exists():
        errors["username"] = [USERNAME_TAKEN]
    if User.objects.filter(email__iexact=email).exists():
        errors["email"] = [EMAIL_TAKEN]
    return errors


def _check_registration(username: str, email: str, password: str, phone: str | None) -> None:
    errors = _uniqueness_errors(username, email)
    try:
        validate_password(password, User(username=username, email=email, phone=phone))
    except DjangoValidationError as exc:
        errors["password"] = list(exc.messages)
    if errors:
        raise FieldErrors(errors)


def _create_user(username: str, email: str, hashed: str, phone: str | None):
    try:
        with transaction.atomic():
            user = User.objects.create(username=username, email=email, phone=phone, password=hashed)
            pair = tokens.tokens_for_user(user)
    except IntegrityError:
        # Lost a race with a concurrent registration of the same username or email.
        errors = _uniqueness_errors(username, email) or {"username": [USERNAME_TAKEN]}
        raise FieldErrors(errors) from None
    return user, pair


async def user_register(
    *, username: str, email: str, password: str, phone: str | None = None
) -> tuple[User, dict[str, str]]:
    await sync_to_async(_check_registration)(username, email, password, phone)
    hashed = await password_hash(password)
    return await sync_to_async(_create_user)(username, email, hashed, phone)


async def user_login(*, username: str, password: str) -> dict[str, str]:
    """Inactive users and wrong passwords get the same answer, in about the same time.

    The username matches in any spelling with the same `username_key` (case, width,
    surrounding whitespace), the same form the login throttle counts.
    """
    user = await User.objects.filter(username_key=username_key(username)).afirst()
    valid = await password_check(password, user.password if user else None)
    if not (valid and user.is_active):
        raise AuthenticationFailed(BAD_CREDENTIALS)
    return await sync_to_async(tokens.tokens_for_user)(user)


async def tokens_refresh(*, refresh: str) -> dict[str, str]:
    try:
        return await sync_to_async(tokens.tokens_rotate)(refresh)
    except tokens.InvalidRefreshToken as exc:
        raise TokenNotValid(str(exc)) from None


async def token_logout(*, refresh: str) -> None:
    try:
        await sync_to_async(tokens.token_revoke)(refresh)
    except tokens.InvalidRefreshToken as exc:
        raise TokenNotValid(str(exc)) from None
