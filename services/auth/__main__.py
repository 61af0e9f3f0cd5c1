"""Run the auth service: ``python -m services.auth``."""

from services.auth.app import create_app
from services.auth.config import AuthConfig
from shared import runtime

if __name__ == "__main__":
    runtime.serve(AuthConfig, create_app, "auth")
