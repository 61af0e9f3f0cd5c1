"""Run the processing service: ``python -m services.processing``."""

from services.processing.app import create_app
from services.processing.config import ProcessingConfig
from shared import logging, runtime


def main() -> None:
    """Read the configuration once and serve until stopped."""
    settings = runtime.load_or_exit(ProcessingConfig, "processing")
    logging.configure(settings.log_level, settings.log_format, process="processing")
    runtime.run(lambda: create_app(settings), settings.host, settings.processing_port, "processing")


if __name__ == "__main__":
    main()
