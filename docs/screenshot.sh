#!/bin/sh
# Takes docs/dashboard.png: the dashboard of a running `colony dev` (with its
# demo mesh) while payments fails and checkout->payments is OPEN.
#
# docs/dashboard-mesh.png, a 20 x 20 mesh at 1920x1080, is taken by the test
# that checks that layout, against a real coordinator:
#
#   COLONY_UPDATE_DOCS=1 go test -count=1 -run TestBrowserMesh20x20 ./dashboard/
#
#   go run ./cmd/colony dev &        # in another terminal, and wait for it
#   docs/screenshot.sh               # from the repository's root
#
# Environment: UI (default http://127.0.0.1:7403), ENDPOINTS (default
# 127.0.0.1:7400), COLONY (default "go run ./cmd/colony"), CHROMIUM
# (default chromium), HISTORY (seconds of traffic before the failure, for
# the sparklines; default 45), OUT (default docs/dashboard.png).
#
# The page is loaded with ?snapshot=1: it reads the state once and follows
# no stream, so the headless browser has nothing left to wait for once the
# page has rendered (<html data-ready="true">).
set -eu
UI=${UI:-http://127.0.0.1:7403}
ENDPOINTS=${ENDPOINTS:-127.0.0.1:7400}
COLONY=${COLONY:-go run ./cmd/colony}
CHROMIUM=${CHROMIUM:-chromium}
HISTORY=${HISTORY:-45}
OUT=${OUT:-docs/dashboard.png}

# The dashboard reads the live windows only while a browser follows its
# feed: follow it, so the page's sparklines have a history.
curl -sN --max-time $((HISTORY + 60)) "$UI/api/events" >/dev/null &
feed=$!
trap 'kill $feed 2>/dev/null || true' EXIT INT TERM

sleep "$HISTORY"
$COLONY demo fail payments --endpoints "$ENDPOINTS"
# Wait for the trip, then for its re-open after the first failed probe:
# that one lasts twice the open duration, time enough for the browser.
state() { $COLONY breaker ls --endpoints "$ENDPOINTS" | awk '$1 == "checkout" && $2 == "payments" { print $3 }'; }
waitfor() {
	tries=0
	until [ "$(state)" "$1" "$2" ]; do
		tries=$((tries + 1))
		if [ "$tries" -gt 90 ]; then
			echo "checkout->payments: not $1 $2 within 90s" >&2
			exit 1
		fi
		sleep 1
	done
}
waitfor = OPEN
waitfor != OPEN
waitfor = OPEN
sleep 3 # a few samples of the rejections

"$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
	--window-size=1440,900 --virtual-time-budget=10000 \
	--screenshot="$OUT" "$UI/?snapshot=1"
$COLONY demo heal payments --endpoints "$ENDPOINTS"
echo "wrote $OUT"
