from django.contrib.auth.models import AbstractUser, UserManager
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

phone_validator = RegexValidator(
    r"^\+[0-9]{7,15}$", "Enter a phone number as + followed by 7 to 15 digits."
)


class User(AbstractUser):
    """A person who can log in. Email is unique case-insensitively and stored as given."""

    email = models.EmailField("email address", max_length=254)
    # null, not "": "no phone given" is rendered as null in the API.
    phone = models.CharField(  # noqa: DJ001
        max_length=16, null=True, blank=True, validators=[phone_validator]
    )

    objects = UserManager()

    REQUIRED_FIELDS = ["email"]

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.username
