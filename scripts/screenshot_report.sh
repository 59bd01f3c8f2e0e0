#!/usr/bin/env bash
# Renders a report's index.html in headless Chromium (Debian package `chromium`) to a PNG, for
# review: scripts/screenshot_report.sh reports/fixtures [out.png] [height]
# The page needs no network; the flags keep Chromium from trying to reach one.
set -euo pipefail
dir=${1:?usage: $0 REPORT_DIR [OUT.png] [HEIGHT]}
out=${2:-$dir/screenshot.png}
height=${3:-4000}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "chromium not found: apt-get install chromium" >&2
    exit 1
fi
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1400,"$height" --hide-scrollbars \
    --screenshot="$(realpath -m "$out")" "file://$(realpath "$dir")/index.html" 2>/dev/null
echo "wrote $out"
