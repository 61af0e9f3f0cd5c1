"""Run the gateway: ``python -m gateway``."""

from gateway.app import create_app, server_limits
from gateway.config import GatewayConfig
from shared import runtime

if __name__ == "__main__":
    runtime.serve(GatewayConfig, create_app, "gateway", server_limits)
