"""Run the ingest service: ``python -m services.ingest``."""

from services.ingest.app import create_app
from services.ingest.config import IngestConfig
from shared import logging, runtime


def main() -> None:
    """Read the configuration once and serve until stopped."""
    settings = runtime.load_or_exit(IngestConfig, "ingest")
    logging.configure(settings.log_level, settings.log_format, process="ingest")
    runtime.run(lambda: create_app(settings), settings.host, settings.ingest_port, "ingest")


if __name__ == "__main__":
    main()
