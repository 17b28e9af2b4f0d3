#!/usr/bin/env bash
# Placeholder: the Prometheus work replaces this (install: promtool into bin/; test: check and test the rules).
set -euo pipefail
exit 0
