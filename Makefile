# The two commands of the README: `make run` (install + the main job) and `make test`.
.PHONY: setup run test lint

setup:
	bash scripts/setup.sh

run: setup
	bash scripts/run_stack.sh

test:
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check .
