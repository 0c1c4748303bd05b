# selfextend-gguf: the two commands that matter are `make run` and `make test`.
# Both create .venv, install the build tools and the package into it, and run.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check
# extra CMake settings, e.g. CMAKE_ARGS="-DGGML_CUDA=on" make install
CMAKE_ARGS ?=
# a local llama.cpp tree for development (patched in place): make install LLAMA_DEV=../llama.cpp
LLAMA_DEV ?=
# the build directory (a folder per wheel tag inside it)
BUILD_DIR ?= build
# the Vulkan build (AMD, Intel and other GPUs) lives beside the CPU one: its own venv and build
VULKAN_VENV ?= .venv-vulkan
# ccache: paths inside the checkout are hashed relative to it, so that a fresh clone
# elsewhere reuses the objects of an earlier one
export CCACHE_BASEDIR := $(CURDIR)

ifneq ($(LLAMA_DEV),)
SKBUILD_DEFINES := -Ccmake.define.SELFEXTEND_LLAMA_DIR=$(abspath $(LLAMA_DEV))
endif

.PHONY: run test test-cpu test-fast test-vulkan install install-vulkan patches clean

$(VENV)/.tools:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.12" ninja "cmake>=3.21" numpy "gguf>=0.10" "pytest>=7" "build>=1.0"
	touch $@

# incremental: the build directory build/<wheel tag> is kept between installs
install: $(VENV)/.tools
	CMAKE_ARGS="$(CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(PIP) install -q --no-build-isolation -e ".[test]" $(SKBUILD_DEFINES) "-Cbuild-dir=$(BUILD_DIR)/{wheel_tag}"

# the Vulkan build in $(VULKAN_VENV), after scripts/setup_vulkan.sh (Debian/Ubuntu packages)
install-vulkan:
	bash scripts/setup_vulkan.sh
	$(MAKE) install VENV=$(VULKAN_VENV) BUILD_DIR=build/vulkan CMAKE_ARGS="-DGGML_VULKAN=ON $(CMAKE_ARGS)"

# the main job: passkey retrieval beyond the default model's trained window,
# vanilla against Self-Extend
run: install
	$(VENV)/bin/selfextend-gguf demo

# both builds: the CPU suite, then the device suite on the Vulkan build
test: test-cpu test-vulkan

test-cpu: install
	@bash scripts/setup_browser.sh || echo "make test-cpu: chromium or chromedriver is missing (above): the browser tests skip"
	$(PY) -m pytest -ra tests

# the device suite with every layer on a Vulkan device (Mesa's lavapipe on a machine
# without a GPU; scripts/device_suite.sh says what runs). Skipped, with the reason, where
# the Vulkan packages cannot be installed (no apt-get or no root: scripts/setup_vulkan.sh)
test-vulkan:
	@bash scripts/setup_vulkan.sh; rc=$$?; \
	if [ $$rc -eq 2 ]; then echo "make test-vulkan: SKIPPED: the Vulkan packages are missing (above)"; exit 0; fi; \
	if [ $$rc -ne 0 ]; then exit $$rc; fi; \
	$(MAKE) --no-print-directory install VENV=$(VULKAN_VENV) BUILD_DIR=build/vulkan \
		CMAKE_ARGS="-DGGML_VULKAN=ON $(CMAKE_ARGS)" && \
	bash scripts/device_suite.sh $(VULKAN_VENV)/bin/python

# everything but the tests on the real default model and the packaging tests (full builds)
test-fast: install
	$(PY) -m pytest -ra -m "not real_model and not packaging" tests

# regenerate patches/ from a development tree whose commits sit on a tag `pin`
patches:
	test -n "$(LLAMA_DEV)" || (echo "usage: make patches LLAMA_DEV=path/to/llama.cpp" && false)
	rm -f patches/[0-9][0-9][0-9][0-9]-*.patch
	git -C $(LLAMA_DEV) format-patch -q --no-signature --zero-commit -N -o $(abspath patches) pin..HEAD

clean:
	rm -rf build $(VENV)
