#!/usr/bin/env bash
# The web UI in a real browser: installs Debian's Chromium and Node.js when missing (as
# root on Debian), playwright-core from the committed package-lock.json, builds brume
# unless BRUME_BIN names a binary, then runs ui.test.mjs. Screenshots go to tests/out/.
set -euo pipefail
cd "$(dirname "$0")"

need=()
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests/browser: installing ${need[*]}"
        for i in 1 2 3; do apt-get update -qq && break || sleep 5; done
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "tests/browser: please install: ${need[*]}" >&2
        exit 1
    fi
fi

want=$(node -p 'require("./package-lock.json").packages["node_modules/playwright-core"].version')
have=$(node -p 'try { require("./node_modules/playwright-core/package.json").version } catch { "" }')
if [ "$want" != "$have" ]; then
    npm ci --no-audit --no-fund --loglevel=error
fi

if [ -z "${BRUME_BIN:-}" ]; then
    (cd ../.. && cargo build -p brume -j "${CARGO_BUILD_JOBS:-2}")
    export BRUME_BIN="$PWD/../../target/debug/brume"
fi
exec node ui.test.mjs
