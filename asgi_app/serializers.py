from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """A serializer that rejects fields it does not declare, instead of ignoring them."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unexpected = sorted(set(data) - set(self.fields))
            if unexpected:
                # Name a few: a body with 80,000 stray keys must not cost a second of CPU
                # and a 2 MB answer (found by tests/reliability/test_body_limits.py).
                raise serializers.ValidationError(
                    {str(name)[:100]: ["Unexpected field."] for name in unexpected[:20]}
                )
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string only: DRF's CharField would silently accept 12 or true as "12"/"True"."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictEmailField(StrictCharField, serializers.EmailField):
    pass
