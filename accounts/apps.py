from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        from accounts import schema  # noqa: F401 - registers the OpenAPI auth extension
        from accounts.audit import record_staff_login

        user_logged_in.connect(record_staff_login, dispatch_uid="audit-staff-login")
