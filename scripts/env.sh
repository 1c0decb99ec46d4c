# shellcheck shell=bash
# Source this file (`source scripts/env.sh`) to use the `make venv` build interactively:
# activates .venv and sets the variables `make test` / `make demo` use.
#   AMENT_PREFIX_PATH            the venv is the install prefix of the ament_cmake build
#                                (ament_index: share/segmif_ros, lib/segmif_ros)
#   FASTDDS_BUILTIN_TRANSPORTS   shared memory only
#   ROS_AUTOMATIC_DISCOVERY_RANGE  discovery on this host only
# ROS_DOMAIN_ID is left alone (default 0). LD_LIBRARY_PATH is not needed: the venv's
# ros-wheels-bootstrapper sets it for every Python started from the venv.
_segmif_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [ ! -x "$_segmif_root/.venv/bin/python" ]; then
    echo "segmif: $_segmif_root/.venv missing, run 'make venv' first" >&2
    unset _segmif_root
    return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
source "$_segmif_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$_segmif_root/.venv"
export FASTDDS_BUILTIN_TRANSPORTS="${FASTDDS_BUILTIN_TRANSPORTS:-SHM}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
unset _segmif_root
