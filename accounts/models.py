import unicodedata

from django.contrib.auth.models import AbstractUser, UserManager
from django.contrib.auth.validators import ASCIIUsernameValidator
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

phone_validator = RegexValidator(
    r"^\+[0-9]{7,15}$", "Enter a phone number as + followed by 7 to 15 digits."
)

USERNAME_TAKEN = "A user with that username already exists."


def username_key(username: str) -> str:
    """The form in which two usernames are the same: NFKC, case-folded, trimmed.

    Registration, login, the login throttles and the unique `username_key` column all
    compare through this one function, so `Alice`, its full-width spelling and
    `" alice\\u3000"` are one account and one throttle counter, and cannot be registered
    twice. (NFKC again after case folding: folding can leave a string that is no longer
    NFKC-normal.)
    """
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())
    return folded.strip()


class UserQuerySet(models.QuerySet):
    """Bulk writes bypass `save()`; these keep `username_key` in step all the same."""

    def bulk_create(self, objs, *args, **kwargs):
        objs = list(objs)
        for user in objs:
            user.username_key = username_key(user.username)
        return super().bulk_create(objs, *args, **kwargs)

    def update(self, **kwargs):
        if isinstance(kwargs.get("username"), str):
            kwargs["username_key"] = username_key(kwargs["username"])
        return super().update(**kwargs)


class AccountManager(UserManager.from_queryset(UserQuerySet)):
    def get_by_natural_key(self, username: str) -> "User":
        # Django's login backend and createsuperuser find users here: by username_key,
        # like the API login, so the admin accepts the user's own spelling too.
        return self.get(username_key=username_key(username))


class User(AbstractUser):
    """A person who can log in. Email is unique case-insensitively and stored as given.

    Usernames are ASCII (letters, digits, `@.+-_`) and unique after NFKC and case folding
    (`username_key`), so no two accounts look alike: not `admin` and `ADMIN`, nor a
    full-width `admin`, nor one spelled with a Cyrillic `a` (refused: not ASCII).
    """

    username = models.CharField(
        "username",
        max_length=150,
        unique=True,
        help_text="Required. 150 characters or fewer. ASCII letters, digits and @/./+/-/_ only.",
        validators=[ASCIIUsernameValidator()],
        error_messages={"unique": USERNAME_TAKEN},
    )
    # Derived from username on every save (and bulk write); the unique constraint below
    # is what makes look-alike registrations impossible, even when two race.
    username_key = models.TextField(editable=False)
    email = models.EmailField("email address", max_length=254)
    # null, not "": "no phone given" is rendered as null in the API.
    phone = models.CharField(  # noqa: DJ001
        max_length=16, null=True, blank=True, validators=[phone_validator]
    )

    objects = AccountManager()

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
            models.UniqueConstraint(fields=["username_key"], name="user_username_key_unique"),
        ]

    def __str__(self) -> str:
        return self.username

    def clean(self) -> None:
        super().clean()  # NFKC-normalizes the username
        if isinstance(self.username, str):
            taken = User.objects.filter(username_key=username_key(self.username))
            if taken.exclude(pk=self.pk).exists():
                raise ValidationError({"username": USERNAME_TAKEN})

    def save(self, *args, **kwargs) -> None:
        self.username_key = username_key(self.username)
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "username" in update_fields:
            kwargs["update_fields"] = {*update_fields, "username_key"}
        super().save(*args, **kwargs)
