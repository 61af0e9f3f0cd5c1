"""Run the gateway: ``python -m gateway``."""

from gateway.app import create_app, server_limits
from gateway.config import GatewayConfig
from shared import logging, runtime


def main() -> None:
    """Read the configuration once and serve until stopped."""
    settings = runtime.load_or_exit(GatewayConfig, "gateway")
    logging.configure(settings.log_level, settings.log_format, process="gateway")
    runtime.run(
        lambda: create_app(settings),
        settings.host,
        settings.gateway_port,
        "gateway",
        server_limits(settings),
    )


if __name__ == "__main__":
    main()
