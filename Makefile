# nut_ros developer entry points.
#   make setup   create/reuse .venv, install pinned ROS 2 kilted wheels + deps, build nut_ros_msgs, install nut_ros
#   make ros-tools  setup, then the real ROS 2 tools (ros2 CLI, launch, launch_testing, sensor_msgs_py,
#                message_filters, cv_bridge when its apt packages are there) from ROS_TOOLS into .venv; skipped
#                silently when ROS_TOOLS does not exist (the tests that need them then skip and say why)
#   make test    setup + ros-tools, then the test suite on a private DDS domain, loopback only
#   make demo    setup, then the demo (node on a replayed real clip, CPU, default weights)
#   make colcon-check  setup + colcon, then build both packages with colcon into a temp dir (slow test)
# Every step is guarded by a stamp file under .venv/.stamps and only re-runs when its inputs change.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
VPY := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps
MSGS_BUILD := $(CURDIR)/build/nut_ros_msgs
PYTEST_ARGS ?=

MSGS_SRC := nut_ros_msgs/CMakeLists.txt nut_ros_msgs/package.xml $(wildcard nut_ros_msgs/msg/*.msg)
PKG_SRC := setup.py setup.cfg package.xml $(wildcard resource/* launch/* config/*)

.PHONY: help setup ros-tools test demo colcon-check check-tools clean eval

help:
	@sed -n 's/^#   //p' $(firstword $(MAKEFILE_LIST))

setup: $(STAMPS)/nut_ros

check-tools:
	@missing=""; \
	for tool in cmake g++ make; do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	command -v $(PYTHON) >/dev/null || missing="$$missing $(PYTHON)"; \
	if [ -n "$$missing" ]; then \
	  echo "error: missing build tools:$$missing" >&2; \
	  echo "       on Debian/Ubuntu: sudo apt-get install cmake g++ make python3-dev python3-venv" >&2; \
	  exit 1; \
	fi; \
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), sys.version' 2>/dev/null || \
	  { echo "error: $(PYTHON) must be Python >= 3.10 (ROS 2 kilted wheels: cp310-cp313)" >&2; exit 1; }; \
	$(PYTHON) -c 'import os, sysconfig; \
	  assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' 2>/dev/null || \
	  { echo "error: Python headers (Python.h) not found for $(PYTHON): sudo apt-get install python3-dev" >&2; exit 1; }

$(VPY): | check-tools
	@echo "== creating virtualenv $(VENV)"
	$(PYTHON) -m venv $(VENV) || \
	  { echo "error: '$(PYTHON) -m venv' failed: sudo apt-get install python3-venv" >&2; exit 1; }
	$(VPY) -m pip install --quiet --upgrade pip

$(STAMPS)/deps: requirements.txt requirements-ros.txt | $(VPY)
	@echo "== installing pinned Python and ROS 2 wheels"
	@# the contrib build replaces opencv-python-headless (both install cv2; older .venvs have the plain one)
	$(VPY) -m pip uninstall --quiet --yes opencv-python-headless opencv-python 2>/dev/null || true
	$(VPY) -m pip install --quiet -r requirements.txt -r requirements-ros.txt
	@mkdir -p $(STAMPS) && touch $@

# rosidl through plain CMake, installed into the venv prefix (an ament prefix: nothing to source at run time).
$(STAMPS)/msgs: $(STAMPS)/deps $(MSGS_SRC) | check-tools
	@echo "== building nut_ros_msgs into $(VENV)"
	rm -rf $(MSGS_BUILD) && mkdir -p $(MSGS_BUILD)
	export VIRTUAL_ENV=$(VENV) PATH=$(VENV)/bin:$$PATH AMENT_PREFIX_PATH=$(VENV); \
	cmake -S nut_ros_msgs -B $(MSGS_BUILD) -DCMAKE_INSTALL_PREFIX=$(VENV) -DBUILD_TESTING=OFF \
	  -DPython3_EXECUTABLE=$(VPY) > $(MSGS_BUILD).log 2>&1 && \
	cmake --build $(MSGS_BUILD) -j2 >> $(MSGS_BUILD).log 2>&1 && \
	cmake --install $(MSGS_BUILD) >> $(MSGS_BUILD).log 2>&1 || \
	{ tail -n 40 $(MSGS_BUILD).log >&2; echo "error: nut_ros_msgs build failed, full log: $(MSGS_BUILD).log" >&2; exit 1; }
	$(VPY) -c 'import nut_ros_msgs.msg'
	@touch $@

$(STAMPS)/nut_ros: $(STAMPS)/msgs $(PKG_SRC)
	@echo "== installing nut_ros (editable)"
	$(VPY) -m pip install --quiet --no-deps -e .
	@touch $@

# Real ROS 2 tools built from pinned sources (../shared/ros2_tools); `nut_ros` is registered in the venv's ament
# index so `ros2 launch nut_ros ...` finds the launch files. Re-runs only when the installer or the package changes.
ROS_TOOLS ?= $(CURDIR)/../shared/ros2_tools
ROS_TOOLS_CV_BRIDGE ?= auto
ros-tools: setup
	@if [ -x "$(ROS_TOOLS)/install_ros_tools.sh" ]; then $(MAKE) --no-print-directory $(STAMPS)/ros-tools; \
	else echo "== $(ROS_TOOLS) not found: real-tool tests will skip"; fi

$(STAMPS)/ros-tools: $(STAMPS)/nut_ros $(wildcard $(ROS_TOOLS)/install_ros_tools.sh $(ROS_TOOLS)/src/SOURCES.txt)
	@echo "== installing the ROS 2 tools from $(ROS_TOOLS) (log: $(VENV)/ros-tools.log)"
	bash $(ROS_TOOLS)/install_ros_tools.sh install $(VENV) $(ROS_TOOLS)/src --register $(CURDIR) --ament-pth \
	  --bag-shim $(ROS_TOOLS)/ros2bag_rosbags --cv-bridge=$(ROS_TOOLS_CV_BRIDGE) > $(VENV)/ros-tools.log 2>&1 || \
	  { tail -n 30 $(VENV)/ros-tools.log >&2; echo "error: ROS 2 tools install failed" >&2; exit 1; }
	@touch $@

ROS_TEST_ENV = OMP_WAIT_POLICY=PASSIVE ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_DOMAIN_ID=$$domain \
	ROS_LOG_DIR=$$logdir AMENT_PREFIX_PATH=$(VENV)

test: setup ros-tools
	@domain=$${ROS_DOMAIN_ID:-$$(( ($$$$ + RANDOM) % 100 + 1 ))}; \
	logdir=$$(mktemp -d -t nut_ros_log.XXXXXX); \
	echo "== pytest (ROS_DOMAIN_ID=$$domain, ROS_LOG_DIR=$$logdir)"; \
	$(ROS_TEST_ENV) $(VPY) -m pytest $(PYTEST_ARGS)

colcon-check: setup
	$(VPY) -m pip install --quiet -r requirements-colcon.txt
	@domain=$${ROS_DOMAIN_ID:-$$(( ($$$$ + RANDOM) % 100 + 1 ))}; logdir=$$(mktemp -d -t nut_ros_log.XXXXXX); \
	$(ROS_TEST_ENV) $(VPY) -m pytest -m slow test/test_ros_colcon.py $(PYTEST_ARGS)

demo: setup
	OMP_WAIT_POLICY=PASSIVE AMENT_PREFIX_PATH=$(VENV) $(VENV)/bin/nut_ros_demo

clean:
	rm -rf build/ $(STAMPS)

#   make eval    setup, then the evaluation suite on real clips (SHARED=../shared; bags, runs, summary.md in EVAL_WORK)
SHARED ?= ../shared
EVAL_WORK ?= /tmp/nut_eval
EVAL_ARGS ?=
eval: setup
	OMP_WAIT_POLICY=PASSIVE AMENT_PREFIX_PATH=$(VENV) $(VPY) -m nut_ros.tools.eval_suite --shared $(SHARED) \
	  --work $(EVAL_WORK) $(EVAL_ARGS)
