# `make run` and `make test` set everything up on first use (a virtualenv in .venv).
PYTHON ?= python3
VENV ?= .venv
# torch and torchvision: the newest release in pyproject.toml's range by default; pin a
# build for your GPU with e.g. make TORCH="torch==2.14.1 torchvision==0.29.1".
TORCH ?= torch torchvision
WEIGHTS ?= imagenet
PY := $(VENV)/bin/python

.PHONY: run test test-fast demo bench lint clean messages

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install --quiet -e ".[test,ray]"
	touch $@

run: $(VENV)/.installed  ## start the Discord bot (reads .env)
	$(VENV)/bin/stylize-bot

test: $(VENV)/.installed  ## the test suite, on the CPU
	$(PY) -m pytest

# The unit layer: the engine's maths, settings, images, CLI and the journal, without the
# tests marked slow (a second or more), e2e (the bot against the fake Discord) or ray. The
# markers are set in tests/conftest.py. `make test` runs everything.
test-fast: $(VENV)/.installed  ## the unit layer, in seconds
	$(PY) -m pytest -m "not slow and not e2e and not ray"

demo: $(VENV)/.installed  ## repaint the sample photo with the CLI
	$(VENV)/bin/stylize samples/content.png samples/style.png -o out/demo.png \
		--size 256 --steps 200 --weights $(WEIGHTS)

bench: $(VENV)/.installed  ## engine benchmark on this machine's best device
	$(PY) benchmarks/engine_bench.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) out

# The catalogues (README, "Languages"): the texts of bot/messages.py and the commands' strings
# into bot/locales/messages.pot, then every language's .po brought in line with it.
POT := bot/locales/messages.pot
messages: $(VENV)/.installed  ## extract the texts to translate and update each language's catalogue
	$(VENV)/bin/pybabel extract -F babel.cfg --add-location=file --sort-output --no-wrap \
		--project=stylize-bot --copyright-holder="stylize-bot contributors" -o $(POT) .
	$(PY) -m bot.translator $(POT)
	$(VENV)/bin/pybabel update -i $(POT) -d bot/locales -D messages --no-wrap \
		--no-fuzzy-matching --ignore-obsolete
