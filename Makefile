# The two commands (README): `make run` and `make test`. Both first install
# what is missing (scripts/install-deps), then configure and build.
#   make run    release build, starts pushpbx on etc/pushpbx.conf (foreground)
#   make test   clang build with ASan+UBSan, runs every test through ctest
#   make fuzz   libFuzzer targets, each for FUZZ_SECONDS (default 60)
#   make bench  parser micro-benchmark (see BENCHMARKS.md for the rest)
#   make install  programs, /etc config, systemd unit, man pages
#               (PREFIX=/usr/local, DESTDIR= for a staging tree)
#   make deb    the Debian package (dpkg-buildpackage), into build-deb/
BUILD      ?= build
TEST_BUILD ?= build-test
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
FUZZ_SECONDS ?= 60
CTEST_ARGS ?=

PREFIX     ?= /usr/local
DESTDIR    ?=
DEB_OUT    ?= build-deb

.PHONY: all deps build run test build-test fuzz bench clean install deb

all: build

deps:
	@./scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

run: build
	./scripts/run $(BUILD)

build-test: deps
	CC=clang cmake -S . -B $(TEST_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	    -DPUSHPBX_SANITIZE=ON -DPUSHPBX_WERROR=ON -DPUSHPBX_FUZZ=ON >/dev/null
	cmake --build $(TEST_BUILD) -j $(JOBS)

test: build-test
	cd $(TEST_BUILD) && ctest --output-on-failure -j $(JOBS) $(CTEST_ARGS)

fuzz: build-test
	./scripts/fuzz $(TEST_BUILD) $(FUZZ_SECONDS)

bench: build
	./scripts/bench $(BUILD)

install: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null
	cmake --build $(BUILD) -j $(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

deb: deps
	./scripts/make-deb $(DEB_OUT)

clean:
	rm -rf $(BUILD) $(TEST_BUILD) $(FUZZ_BUILD) $(DEB_OUT)
