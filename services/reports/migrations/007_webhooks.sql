-- Webhooks (Standard Webhooks): the endpoints an account subscribes to event types, one
-- delivery per endpoint and event (recorded by reports's webhooks consumer; a redelivered
-- event adds nothing), and every attempt to send one (the delivery log).

CREATE TABLE webhook_endpoints (
    id bigserial PRIMARY KEY,
    account_id uuid NOT NULL,
    url text NOT NULL,
    event_types text[] NOT NULL,       -- services.reports.webhooks.domain.EVENT_TYPES
    secret_sealed bytea NOT NULL,      -- whsec_…, shared.sealing.SecretBox, bound to the id
    disabled text,                     -- why it is disabled; NULL while enabled
    disabled_since timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id);

CREATE TABLE webhook_deliveries (
    id bigserial PRIMARY KEY,
    endpoint_id bigint NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    account_id uuid NOT NULL,
    event_id uuid NOT NULL,            -- the webhook-id header: receivers deduplicate on it
    event_type text NOT NULL,
    body text NOT NULL,                -- the exact JSON sent (and signed) on every attempt
    -- NULL while it is to be sent; then delivered (a 2xx), or failed (out of attempts, the
    -- endpoint gone (410) or its address refused: the endpoint is disabled with it).
    outcome text CHECK (outcome IN ('delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,         -- a sender is posting it until then (a lease)
    last_error text,
    delivered_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, id) WHERE outcome IS NULL;

CREATE TABLE webhook_attempts (
    id bigserial PRIMARY KEY,
    delivery_id bigint NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    http_status integer,               -- NULL when no answer came (refused address, timeout)
    error text,                        -- NULL for a delivered attempt
    retry_at timestamptz               -- when the next attempt is due, for a retried one
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id);
