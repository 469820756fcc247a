# Two commands on a fresh machine: `make demo` and `make test` (both create .venv and install first).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DATA := data/gazefollow_synthetic
GAZE360_DATA := data/gaze360_synthetic
MAKE_START := $(shell date +%s)  # when this make started: the demo reports its time from here, install included

# make web-demo: the checkpoint the page predicts with (make demo writes this one) and the port it is served on
WEIGHTS ?= output/demo/last.pt
PORT ?= 7860
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install data demo test clean-demo gaze360-demo clean-gaze360-demo web-demo browser

$(STAMP): requirements.txt requirements-test.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt -c constraints.txt
	# Test oracles (guided-diffusion's own code; diffusers' schedulers); --no-deps so they cannot pull another torch.
	$(PY) -m pip install --quiet --no-deps guided-diffusion-sdk diffusers
	# predict.py's default head detector (MTCNN; its weights are inside the wheel, so it works offline). --no-deps:
	# facenet-pytorch 2.6 pins torch<2.3, torchvision<0.18, numpy<2 and Pillow<10.3, but runs on this project's versions.
	$(PY) -m pip install --quiet --no-deps facenet-pytorch
	touch $(STAMP)

install: $(STAMP)

# The built-in synthetic dataset in the GazeFollow-extended format (written once; seeded).
$(DEMO_DATA)/test_annotations_release.txt: | $(STAMP)
	$(PY) -m datasets.synthetic --root $(DEMO_DATA)

data: $(DEMO_DATA)/test_annotations_release.txt

demo: data
	$(PY) main.py --yaml_diffusion configs/demo/diffusion.yaml --yaml_gaze configs/demo/gaze.yaml --tag demo
	@elapsed=$$(( $$(date +%s) - $(MAKE_START) )); \
	echo "make demo: $$((elapsed / 60)) min $$((elapsed % 60)) s (install, data, training and evaluation)"

clean-demo:
	rm -rf output/demo

# The Gaze360 demo: synthetic Gaze360-format data (seeded), then the multi-crop LSTM and the static model on CPU.
$(GAZE360_DATA)/test.txt: | $(STAMP)
	$(PY) -m gaze360.synthetic --root $(GAZE360_DATA)

gaze360-demo: $(GAZE360_DATA)/test.txt
	$(PY) -m gaze360.demo

clean-gaze360-demo:
	rm -rf output/gaze360_demo output/gaze360_demo_static

# The local web demo (inference/app.py) of the demo's checkpoint, or of WEIGHTS=...: open http://127.0.0.1:$(PORT)/
web-demo: | $(STAMP)
	@test -e $(WEIGHTS) || { echo "$(WEIGHTS) not found: run 'make demo' first, or give WEIGHTS=checkpoint"; exit 2; }
	$(PY) -m inference.app --weights $(WEIGHTS) --port $(PORT)

# Debian's Chromium and its driver for the web demo's browser test (tests/test_web_demo_browser.py). Without apt-get
# (not Debian) the test is skipped on a developer's machine and fails on CI.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif ! command -v apt-get >/dev/null; then echo "no apt-get: install Chromium and chromedriver for the browser test"; \
	else echo "installing Debian's chromium and chromium-driver (the web demo's browser test)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null; fi

test: install browser
	$(PY) -m pytest -q tests
