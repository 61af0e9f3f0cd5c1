# Darkroom: `make run` brings the platform up, `make test` proves it. See README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: install run test chaos lint format secrets migrate check clean fuzz up down bench

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip 2>/dev/null || true
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import aiohttp, aio_pika, asyncpg, pyvips, structlog, honcho, uvloop" \
		|| (echo "make: installing the Python packages failed" >&2; exit 1)
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)

secrets: $(STAMP)
	@$(BIN)/darkroom secrets >/dev/null

check: $(STAMP)
	@$(BIN)/darkroom check >/dev/null

migrate: secrets check
	@$(BIN)/darkroom migrate >/dev/null

## run: every service and the gateway at $DARKROOM_PORT (8080); Ctrl-C stops them all
run: migrate
	@mkdir -p var/blobs var/mail
	@echo "Darkroom: http://127.0.0.1:$${DARKROOM_PORT:-8080}  (Ctrl-C to stop)"
	@exec $(BIN)/honcho -f deploy/Procfile -d . start

## test: the whole suite against the real local PostgreSQL, RabbitMQ and a loopback S3 server
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## chaos: fault injection and load (kill -9, broker and database cuts, poison, 60 s load); writes RESILIENCE.md
chaos: $(STAMP)
	$(BIN)/python -m pytest -m chaos -p no:cacheprovider tests/chaos $(PYTEST_ARGS)

## bench: speed side by side with odiff, pixelmatch, raw pyvips (and thumbor); never part of test
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## up: the platform in containers (compose.yaml); .env is made once from .env.example with fresh secrets
up: .env
	docker compose up -d --build
	@echo "Darkroom: http://127.0.0.1:$$(sed -n 's/^DARKROOM_PUBLISHED_PORT=//p' .env)  (make down to stop)"

## down: stop the containers (the named volumes keep the data; `docker compose down -v` drops it)
down:
	docker compose down

.env:
	@python3 -c "import base64, re, secrets, sys; \
	fresh = lambda m: base64.b64encode(secrets.token_bytes(32)).decode() if 'base64' in m[0] else secrets.token_hex(32); \
	sys.stdout.write(re.sub(r'change-me-[\w-]+', fresh, open('.env.example').read()))" > $@.tmp
	@mv $@.tmp $@ && chmod 600 $@ && echo "make: wrote .env with fresh secrets (keep it; never commit it)"

## fuzz: schemathesis through the gateway and atheris on the parsers, longer than make test
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-25} FUZZ_SECONDS=$${FUZZ_SECONDS:-600} ATHERIS_SECONDS=$${ATHERIS_SECONDS:-60} \
		$(BIN)/python -m pytest -s -p no:cacheprovider --timeout 900 tests/test_fuzz.py

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var/blobs var/mail .pytest_cache
