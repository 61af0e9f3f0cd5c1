"""Run the gateway: ``python -m gateway``."""

from gateway.app import create_app, server_limits
from gateway.config import GatewayConfig
from shared import runtime

if __name__ == "__main__":
    # A proxy holds no state of its own: when a client goes away, stop its request, which
    # closes the upstream connection, so the service behind can drop the work too.
    runtime.serve(GatewayConfig, create_app, "gateway", server_limits, cancel_on_disconnect=True)
