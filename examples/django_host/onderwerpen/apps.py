from django.apps import AppConfig


class OnderwerpenConfig(AppConfig):
    name = "onderwerpen"
    default_auto_field = "django.db.models.BigAutoField"
