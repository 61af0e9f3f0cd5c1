"""Run the auth service: ``python -m services.auth``."""

from services.auth.app import create_app
from services.auth.config import AuthConfig
from shared import logging, runtime


def main() -> None:
    """Read the configuration once and serve until stopped."""
    settings = runtime.load_or_exit(AuthConfig, "auth")
    logging.configure(settings.log_level, settings.log_format, process="auth")
    runtime.run(lambda: create_app(settings), settings.host, settings.auth_port, "auth")


if __name__ == "__main__":
    main()
