#!/usr/bin/env bash
# CI: install Debian's chromium for the headless-browser test of the reviewers' report
# (tests/test_report.py), only when /usr/bin/chromium is missing. Never fails the build itself:
# when it cannot install, it prints a warning and exits 0 (the test then fails under CI=1,
# which says clearly what is missing).
set -u
if [ -x /usr/bin/chromium ]; then
  echo "install-chromium: /usr/bin/chromium present ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: WARNING: /usr/bin/chromium is missing and apt-get is not available; not installed" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install-chromium: WARNING: not root and no passwordless sudo; chromium not installed" >&2
    exit 0
  fi
fi
echo "install-chromium: installing Debian's chromium package"
if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update \
   && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; then
  echo "install-chromium: installed ($(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown'))"
else
  echo "install-chromium: WARNING: apt-get could not install chromium" >&2
fi
exit 0
