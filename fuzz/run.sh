#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails on the first crash.
#   bash fuzz/run.sh [seconds per target]      (default: FUZZ_SECONDS or 45)
# Needs cargo-fuzz. libFuzzer needs nightly compiler flags; on a stable toolchain they are
# allowed with RUSTC_BOOTSTRAP=1 (a nightly toolchain works as it is). Seeds: the corpus of
# real pages for the injector, the sample configurations for the loader, and a few beacons
# and tokens written below; each target's own corpus grows in fuzz/corpus/<target>/ (not
# committed). A crash leaves its input in fuzz/artifacts/<target>/: keep it as a regression
# test in tests/properties.rs (or the module's unit tests) before fixing it.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$fuzz_dir")"
seconds="${1:-${FUZZ_SECONDS:-45}}"
pages="${SMPROXY_CORPUS:-$root/../shared/corpus/pages}"

if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

seed() { # target, file name, contents
  mkdir -p "$fuzz_dir/corpus/$1"
  printf '%s' "$3" > "$fuzz_dir/corpus/$1/$2"
}

mkdir -p "$fuzz_dir/corpus/inject" "$fuzz_dir/corpus/config"
if [ -d "$pages" ]; then
  # The real pages up to 64 KiB (longer ones slow every run down without adding structure).
  find "$pages" -name '*.html' -size -64k -exec cp -t "$fuzz_dir/corpus/inject/" {} +
fi
seed inject tagged.html "<html><head><script>var _smid='x';</script></head><body><script>var _smid='y';</script></body></html>"
cp "$root"/conf/*.yaml "$fuzz_dir/corpus/config/"
seed beacon pageview.json '{"type":"pageview","url":"http://shop.example/a?utm_source=x","title":"T","referrer":"https://r.example/","screen":"1x1","lang":"pl"}'
seed beacon event.json '{"type":"event","url":"http://shop.example/","name":"n","props":{"a":1,"b":"c","d":null}}'
seed beacon form.json '{"type":"form","url":"https://shop.example:8080/f","email":"a@b.example","fields":["email","name"]}'
seed beacon link.json '{"type":"link","url":"http://shop.example/","hosts":["blog.shop.example","[::1]:8080"]}'
seed beacon query.txt $'type=event&url=http%3A%2F%2Fshop.example%2F&name=x\nhttp://shop.example/'
seed token cookie.txt $'www.shop.example.com\nsmuuid=0f8fad5b-d9cb-469f-a165-70867728950e; smclient=AQE.x; smconsent=1'
seed token token.txt 'AQFNnK2E_____________________________________w.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'

cd "$fuzz_dir"
# The same dependency versions as the main build (cargo adds libfuzzer-sys to the copy).
[ -f Cargo.lock ] || cp "$root/Cargo.lock" Cargo.lock
cargo fuzz build --sanitizer none
for target in $(cargo fuzz list); do
  echo "fuzzing $target for ${seconds}s"
  cargo fuzz run --sanitizer none "$target" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
