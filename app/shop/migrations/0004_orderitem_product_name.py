from django.db import migrations, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.migrations.state import StateApps
from django.db.models import OuterRef, Subquery


def names_from_the_catalogue(apps: StateApps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    # Lines placed before the column existed: today's name is the best record left of them.
    OrderItem = apps.get_model("shop", "OrderItem")
    Product = apps.get_model("shop", "Product")
    name = Product.objects.filter(pk=OuterRef("product_id")).values("name")[:1]
    OrderItem.objects.using(schema_editor.connection.alias).update(product_name=Subquery(name))


class Migration(migrations.Migration):
    dependencies = [
        ("shop", "0003_product_stock_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="orderitem",
            name="product_name",
            field=models.CharField(default="", max_length=200),
            preserve_default=False,
        ),
        migrations.RunPython(names_from_the_catalogue, migrations.RunPython.noop, elidable=True),
    ]
