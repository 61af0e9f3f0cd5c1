"""Run the reports service: ``python -m services.reports``."""

from services.reports.app import create_app
from services.reports.config import ReportsConfig
from shared import logging, runtime


def main() -> None:
    """Read the configuration once and serve until stopped."""
    settings = runtime.load_or_exit(ReportsConfig, "reports")
    logging.configure(settings.log_level, settings.log_format, process="reports")
    runtime.run(lambda: create_app(settings), settings.host, settings.reports_port, "reports")


if __name__ == "__main__":
    main()
