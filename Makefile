# The two commands of the README: `make run` (install + the main job) and `make test` (install + the tests).
# Set-up is idempotent and skips what is already installed, so both run it first.
.PHONY: setup run test lint

setup:
	bash scripts/setup.sh

run: setup
	bash scripts/run_stack.sh

test: setup
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check .
