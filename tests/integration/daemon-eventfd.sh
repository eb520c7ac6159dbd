#!/usr/bin/env bash
# The daemon suite (daemon.sh) again, with clients sleeping on the daemon's
# wake eventfd (PINFER_WAIT=eventfd): the path of kernels without io_uring
# futex operations and of applications with their own epoll loop.
export PINFER_WAIT=eventfd
exec bash "$(dirname "$0")/daemon.sh"
