#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails on the first crash.
#   bash fuzz/run.sh [seconds per target]      (default: FUZZ_SECONDS or 45)
# Needs cargo-fuzz. libFuzzer needs nightly compiler flags; on a stable toolchain they are
# allowed with RUSTC_BOOTSTRAP=1 (a nightly toolchain works as it is).
#
# The build: release with debug assertions and overflow checks (cargo-fuzz's default), no
# sanitizer (the code under test is safe Rust: a contract violation is a panic, which libFuzzer
# reports as a crash), 16 codegen units (cargo-fuzz's 1 makes the instrumented build of
# Pingora several times slower, for a few per cent of executions per second). It goes to a
# target directory outside the clone, FUZZ_TARGET_DIR or $CARGO_TARGET_DIR/fuzz, so a later
# run rebuilds only smproxy and the targets.
#
# Seeds: the corpus of real pages for the injector, the sample configurations for the loader,
# and a few beacons and tokens written below (fuzz/corpus/<target>/). What libFuzzer finds
# interesting is kept in FUZZ_CORPUS_DIR/<target>/ (default: fuzz/corpus-found, not committed);
# a longer run by hand can start from it, but it only grows (30 s of the injector added 350
# inputs, 15 MB), so CI starts from the seeds every time to keep its time bounded. A crash
# leaves its input in fuzz/artifacts/<target>/ and libFuzzer prints it in base64: keep it as
# a regression test in tests/properties.rs (or the module's unit tests) before fixing it.
set -euo pipefail

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$fuzz_dir")"
seconds="${1:-${FUZZ_SECONDS:-45}}"
pages="${SMPROXY_CORPUS:-$root/../shared/corpus/pages}"
target_dir="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/smproxy-target}/fuzz}"
found="${FUZZ_CORPUS_DIR:-$fuzz_dir/corpus-found}"

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
build_opts=(--sanitizer none --codegen-units 16 --target-dir "$target_dir")
started=$SECONDS
cargo fuzz build "${build_opts[@]}"
echo "fuzz build: $((SECONDS - started))s (target dir $target_dir)"
for target in $(cargo fuzz list); do
  mkdir -p "$found/$target"
  echo "fuzzing $target for ${seconds}s"
  # The first corpus directory receives new inputs; the seeds are only read.
  cargo fuzz run "${build_opts[@]}" "$target" "$found/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1
done
echo "fuzzing: $(cargo fuzz list | wc -l) targets, ${seconds}s each, no crash"
