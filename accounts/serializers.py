import unicodedata

from django.contrib.auth.validators import ASCIIUsernameValidator
from rest_framework import serializers

from accounts.models import User, phone_validator
from asgi_app.serializers import StrictCharField, StrictEmailField, StrictSerializer


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "phone", "is_staff", "is_superuser", "date_joined"]
        read_only_fields = fields


class UsernameField(StrictCharField):
    """Stored NFKC-normalized (a full-width `alice` is `alice`), then held to ASCII."""

    def to_internal_value(self, data) -> str:
        return unicodedata.normalize("NFKC", super().to_internal_value(data))


class RegisterSerializer(StrictSerializer):
    username = UsernameField(max_length=150, validators=[ASCIIUsernameValidator()])
    email = StrictEmailField(max_length=254)
    password = StrictCharField(
        max_length=128, write_only=True, trim_whitespace=False, style={"input_type": "password"}
    )
    phone = StrictCharField(
        max_length=16, required=False, allow_null=True, validators=[phone_validator]
    )


class LoginSerializer(StrictSerializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=128, write_only=True, trim_whitespace=False)


class RefreshSerializer(StrictSerializer):
    refresh = StrictCharField(max_length=2048)


class TokenPairSerializer(serializers.Serializer):
    access = StrictCharField()
    refresh = StrictCharField()


class RegisterResponseSerializer(TokenPairSerializer):
    user = UserSerializer()
