#!/usr/bin/env bash
# The daemon suite (daemon.sh) again, with io_uring disabled on both sides
# (PINFER_NO_IO_URING=1): the futex + poll(2) fallback that container
# seccomp profiles and kernel.io_uring_disabled force.
export PINFER_NO_IO_URING=1
exec bash "$(dirname "$0")/daemon.sh"
