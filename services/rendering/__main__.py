"""Run the rendering service: ``python -m services.rendering``."""

from services.rendering.app import create_app
from services.rendering.config import RenderingConfig
from shared import runtime

if __name__ == "__main__":
    runtime.serve(RenderingConfig, create_app, "rendering")
