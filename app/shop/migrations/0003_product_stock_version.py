from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("shop", "0002_order_total_wider"),
    ]

    operations = [
        migrations.AddField(
            model_name="product",
            name="stock_version",
            field=models.PositiveBigIntegerField(default=0),
        ),
    ]
