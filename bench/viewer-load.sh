#!/usr/bin/env bash
# Latency of `headlens serve` under load: REQUESTS requests (default 200), CONCURRENT at a time (default 20), of the
# kinds the page sends (tokenize, heads, pattern, token, compare in turn) on ten texts, over loopback with curl.
# Prints the errors and the p50 / p90 / p99 / max latency in milliseconds, plus the wall time.
#
#   dotnet build HeadLens.slnx -c Release && bench/viewer-load.sh
#   MODEL=path/to/gpt2 MAX_TOKENS=1024 bench/viewer-load.sh        (another model; default: the embedded one)
#
# The server is started here and stopped at the end; a few requests of each kind run first, unmeasured (the first
# model-view request works out the weights' copying scores once). curl's time_total is measured per request, from
# connecting to the last byte, so curl's own start-up is not counted; on a 2-core machine the 20 curl processes still
# compete with the server for the CPU, as a browser's tabs would.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cli=${HEADLENS:-$root/src/HeadLens.Cli/bin/Release/net10.0/HeadLens.Cli}
requests=${REQUESTS:-200}
concurrent=${CONCURRENT:-20}
port=${PORT:-5391}
url="http://127.0.0.1:$port"

if [[ ! -x "$cli" ]]; then
  echo "viewer-load: $cli is not built (dotnet build HeadLens.slnx -c Release, or set HEADLENS)" >&2
  exit 1
fi

work=$(mktemp -d)
server_args=(serve --port "$port")
[[ -n "${MODEL:-}" ]] && server_args+=(--model "$MODEL")
[[ -n "${MAX_TOKENS:-}" ]] && server_args+=(--max-tokens "$MAX_TOKENS")
"$cli" "${server_args[@]}" >"$work/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
  curl -sf "$url/api/model" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
  sleep 0.2
done

texts=(
  "In the beginning God created the heaven and the earth."
  "And the earth was without form, and void; and darkness was upon the face of the deep."
  "And God said, Let there be light: and there was light."
  "And God saw the light, that it was good: and God divided the light from the darkness."
  "And God called the light Day, and the darkness he called Night."
  "And the evening and the morning were the first day."
  "And God said, Let there be a firmament in the midst of the waters."
  "And God made the firmament, and divided the waters which were under the firmament."
  "And God called the firmament Heaven."
  "Let the waters under the heaven be gathered together unto one place, and let the dry land appear."
)

# One line per request: path and the file holding its JSON body.
write_request() {
  local n=$1 text=${texts[$(( $1 % 10 ))]} next=${texts[$(( ($1 + 1) % 10 ))]}
  local body path
  case $(( n % 5 )) in
    0) path=/api/tokenize; body="{\"text\":\"$text\"}" ;;
    1) path=/api/heads; body="{\"text\":\"$text\"}" ;;
    2) path=/api/pattern; body="{\"text\":\"$text\",\"layer\":$(( n % 4 )),\"head\":$(( (n / 5) % 4 ))}" ;;
    3) path=/api/token; body="{\"text\":\"$text\",\"index\":$(( n % 10 ))}" ;;
    *) path=/api/compare; body="{\"a\":\"$text\",\"b\":\"$next $(echo "$text" | cut -d' ' -f2)\"}" ;;
  esac
  printf '%s' "$body" >"$work/$n.json"
  echo "$path $work/$n.json"
}

for n in $(seq 0 $(( requests - 1 ))); do write_request "$n"; done >"$work/requests"
for n in $(seq 0 9); do write_request "$n"; done >"$work/warmup"

one() {
  curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -H 'Content-Type: application/json' --data-binary "@$2" "$URL$1"
}
export -f one
export URL=$url

xargs -P "$concurrent" -n 2 bash -c 'one "$@"' _ <"$work/warmup" >/dev/null
start=$(date +%s.%N)
xargs -P "$concurrent" -n 2 bash -c 'one "$@"' _ <"$work/requests" >"$work/results"
end=$(date +%s.%N)

errors=$(awk '$1 != 200' "$work/results" | wc -l)
awk '{ printf "%.1f\n", $2 * 1000 }' "$work/results" | sort -n >"$work/sorted"
awk -v wall="$start $end" -v errors="$errors" -v concurrent="$concurrent" '
  { ms[NR] = $1 }
  END {
    split(wall, t, " ")
    n = NR
    printf "%d requests, %d at a time: %d errors, wall %.2f s, p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms\n",
      n, concurrent, errors, t[2] - t[1], ms[int(n * 0.50 + 0.5)], ms[int(n * 0.90 + 0.5)], ms[int(n * 0.99 + 0.5)], ms[n]
  }' "$work/sorted"
