import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    """Tokens made before lifetimes existed never expired and outlived password changes: they
    end here (expired now, no auth hash); their users log in again."""

    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="expires_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="apitoken",
            name="auth_hash",
            field=models.CharField(default="", max_length=128),
            preserve_default=False,
        ),
    ]
