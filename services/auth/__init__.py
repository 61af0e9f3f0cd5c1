"""Auth: accounts, users, credentials, sessions; resolves every credential for the gateway."""
