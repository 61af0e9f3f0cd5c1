"""Run the processing service: ``python -m services.processing``."""

from services.processing.app import create_app
from services.processing.config import ProcessingConfig
from shared import runtime

if __name__ == "__main__":
    runtime.serve(ProcessingConfig, create_app, "processing")
