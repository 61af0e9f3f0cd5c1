"""Run the reports service: ``python -m services.reports``."""

from services.reports.app import create_app
from services.reports.config import ReportsConfig
from shared import runtime

if __name__ == "__main__":
    runtime.serve(ReportsConfig, create_app, "reports")
