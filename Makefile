# The two commands of the README:
#   make demo   runs the whole pipeline on the bundled example call and prints its transcript
#   make test   installs everything (scripts/bootstrap.sh) and runs lint, types and every test
.PHONY: demo test test-tools bootstrap lint typecheck pytest bench clean

bootstrap:
	scripts/bootstrap.sh

demo: bootstrap
	.venv/bin/spanscribe demo

lint:
	.venv/bin/ruff check .

typecheck:
	.venv/bin/mypy spanscribe/protocols schemas streams/core spanscribe/config.py spanscribe/partitioning.py

pytest:
	.venv/bin/pytest

test-tools:
	scripts/bootstrap.sh --test-tools

test: test-tools lint typecheck pytest

bench: bootstrap
	.venv/bin/python bench/run_all.py

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache
