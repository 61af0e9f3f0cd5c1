"""Run the ingest service: ``python -m services.ingest``."""

from services.ingest.app import create_app
from services.ingest.config import IngestConfig
from shared import runtime

if __name__ == "__main__":
    runtime.serve(IngestConfig, create_app, "ingest")
