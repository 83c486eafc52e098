#!/usr/bin/env bash
# Mutation testing of seguro-core with cargo-mutants: do core's tests notice when core
# breaks? Prints caught / missed / unviable / timeouts per file and exits non-zero when
# a mutant was missed (or the run could not be made).
#
#   scripts/mutants.sh                 code a change touches: `git diff BASE -- core/`
#   scripts/mutants.sh --all           the whole of seguro-core
#   scripts/mutants.sh -f FILE [-f F]  these files (e.g. core/src/msg.rs)
#
# Options:
#   --base REV        diff against REV (default: $MUTANTS_BASE; else, on a branch other
#                     than main, its merge-base with main; else the commit in
#                     .ci/mutants-base, which is updated at each landing on main)
#   --budget SECS     time for the mutants themselves ($MUTANTS_BUDGET; default: none).
#                     When the estimate (mutants × $MUTANTS_SECS_PER_MUTANT, default 10)
#                     exceeds it, a deterministic subset runs instead — every k-th
#                     mutant in source order (cargo-mutants' round-robin shard 0/k) —
#                     and the script says so and names the command for the rest.
#   --in-place        mutate this checkout itself (CI: a clean clone nobody edits; reuses
#                     its target/). Default: a copy in target/mutants/tree, so you can
#                     keep editing while it runs.
#   --jobs N          test N mutants at once ($MUTANTS_JOBS; default 1), each in its own
#                     copy of the tree under target/mutants/tmp (cargo-mutants -j), with
#                     ../shared linked beside the copies. Not with --in-place. Each copy
#                     builds on its own: it pays only with spare cores (on 2 cores, 2
#                     jobs were no faster than 1).
#   --list            only list the mutants that would run
#   -- ARGS           passed to cargo-mutants (e.g. -- -F 'parse_users')
#
# Environment: MUTANTS_NICE (niceness, default 10), MUTANTS_TEST_TIMEOUT (seconds a
# mutant's tests may run before it counts as a timeout, default 60; core's tests take
# about 3 s, so 20 saves most of the minute each looping mutant costs on a quiet
# machine).
#
# Why a copy of our own rather than cargo-mutants' default scratch copy: core's tests read
# ../shared/vectors (beside the repository), which a copy under /tmp cannot see. The copy
# here sits in target/mutants/tree with target/mutants/shared linked to ../shared, keeps
# its own warm target/ between runs, and is mutated in place (one build at a time, as
# cargo-mutants does with --in-place) or, with --jobs, copied once per job under
# target/mutants/tmp, where target/mutants/tmp/shared is the same link.
#
# Equivalent mutants that cannot be killed are excluded in .cargo/mutants.toml, each with
# the reason.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

mode=diff
base=${MUTANTS_BASE:-}
budget=${MUTANTS_BUDGET:-}
per=${MUTANTS_SECS_PER_MUTANT:-10}
in_place=0
jobs=${MUTANTS_JOBS:-1}
list=0
files=()
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --all) mode=all ;;
        -f | --file) mode=files; files+=("$2"); shift ;;
        --base) base=$2; shift ;;
        --budget) budget=$2; shift ;;
        --in-place) in_place=1 ;;
        --list) list=1 ;;
        --jobs) jobs=$2; shift ;;
        -h | --help) sed -n '2,43p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "mutants.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$budget" ] && ! [[ "$budget" =~ ^[0-9]+$ ]]; then
    echo "mutants.sh: --budget takes whole seconds, not '$budget'" >&2
    exit 2
fi
if ! [[ "$jobs" =~ ^[1-9][0-9]*$ ]]; then
    echo "mutants.sh: --jobs takes a number of jobs (1 or more), not '$jobs'" >&2
    exit 2
fi
if [ "$jobs" -gt 1 ] && [ $in_place = 1 ]; then
    echo "mutants.sh: --jobs above 1 needs copies of the tree: not with --in-place" >&2
    exit 2
fi
if ! cargo mutants --version >/dev/null 2>&1; then
    echo "mutants.sh: cargo-mutants is not installed (cargo install cargo-mutants --version 27.1.0 --locked)" >&2
    exit 2
fi

work=$root/target/mutants
mkdir -p "$work"
filter=(-p seguro-core)
case $mode in
    diff)
        if [ -z "$base" ]; then
            branch=$(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo HEAD)
            if [ "$branch" != main ] && git rev-parse --verify -q main >/dev/null; then
                base=$(git merge-base HEAD main)
                why="merge-base of $branch with main"
            elif [ -f .ci/mutants-base ]; then
                base=$(tr -d ' \n' <.ci/mutants-base)
                why=".ci/mutants-base"
            else
                echo "mutants.sh: no base: set MUTANTS_BASE, pass --base, or add .ci/mutants-base" >&2
                exit 2
            fi
        else
            why="given"
        fi
        if ! git rev-parse --verify -q "$base^{commit}" >/dev/null; then
            echo "mutants.sh: base $base is not a commit here (a shallow clone? fetch more history)" >&2
            exit 2
        fi
        git diff "$base" -- core/ >"$work/diff.patch"
        echo "mutants.sh: code changed in core/ since $(git rev-parse --short "$base") ($why):" \
            "$(git diff --stat "$base" -- core/ | tail -n 1)"
        if [ ! -s "$work/diff.patch" ]; then
            echo "mutants.sh: no change in core/: nothing to test"
            exit 0
        fi
        filter+=(--in-diff "$work/diff.patch")
        ;;
    files) for f in "${files[@]}"; do filter+=(-f "$f"); done ;;
    all) ;;
esac

# The tree cargo-mutants mutates.
if [ $in_place = 1 ]; then
    tree=$root
else
    tree=$work/tree
    mkdir -p "$tree"
    # Replace everything but the warm target/ with the checkout's current files (tracked
    # and new, not ignored); tar keeps modification times, so unchanged files do not
    # rebuild.
    find "$tree" -mindepth 1 -maxdepth 1 ! -name target -exec rm -rf {} +
    git ls-files -z -co --exclude-standard | tar -c --null -T - -f - | tar -x -C "$tree" -f -
    # Except core's own files, which are the ones mutated: a run that was interrupted while
    # a mutant was built leaves that build in target/, newer than the restored source, and
    # cargo would take it as fresh. Rebuilding seguro-core alone costs seconds.
    find "$tree/core" -type f -exec touch {} +
    shared=$(cd "$root/../shared" 2>/dev/null && pwd || true)
    if [ -z "$shared" ]; then
        echo "mutants.sh: ../shared (the protocol vectors core's tests read) is not beside the repository" >&2
        exit 2
    fi
    ln -sfn "$shared" "$work/shared"
fi

cd "$tree" || exit 2
cargo mutants --list "${filter[@]}" "${extra[@]}" >"$work/list.txt" 2>"$work/list.err" || {
    cat "$work/list.err" >&2
    exit 2
}
count=$(wc -l <"$work/list.txt")
echo "mutants.sh: $count mutants"
if [ "$list" = 1 ]; then
    cat "$work/list.txt"
    exit 0
fi
if [ "$count" -eq 0 ]; then
    echo "mutants.sh: the change touches no mutable code: nothing to test"
    exit 0
fi
shard=()
if [ -n "$budget" ] && [ $((count * per)) -gt "$budget" ]; then
    k=$(((count * per + budget - 1) / budget))
    echo "mutants.sh: $count mutants at ~${per} s each (~$((count * per)) s) exceed the budget of" \
        "${budget} s: testing a deterministic subset, every ${k}th mutant in source order" \
        "(round-robin shard 0/$k, about $((count / k + 1)) mutants)."
    echo "mutants.sh: the rest are NOT tested here; run all of them with: scripts/mutants.sh" \
        "${files[*]:+-f ${files[*]}} $([ "$mode" = diff ] && echo "--base $base")"
    shard=(--shard "0/$k" --sharding round-robin)
fi

out=$work/out
rm -rf "$out"
mkdir -p "$out"
start=$SECONDS
# Mutants get no debug info: linking the test binaries is most of a mutant's build time.
where=(--in-place)
if [ "$jobs" -gt 1 ]; then
    # cargo-mutants copies the tree (with its warm target/) once per job into TMPDIR;
    # core's tests find the vectors at ../shared from each copy.
    mkdir -p "$work/tmp"
    rm -rf "$work"/tmp/cargo-mutants-*
    ln -sfn "$shared" "$work/tmp/shared"
    where=(-j "$jobs" --copy-target=true)
    export TMPDIR=$work/tmp
fi
CARGO_PROFILE_DEV_DEBUG=${CARGO_PROFILE_DEV_DEBUG:-0} nice -n "${MUTANTS_NICE:-10}" \
    cargo mutants "${where[@]}" "${filter[@]}" "${shard[@]}" \
    --minimum-test-timeout "${MUTANTS_TEST_TIMEOUT:-60}" \
    --no-shuffle -o "$out" "${extra[@]}" >"$out/run.log" 2>&1
status=$?
elapsed=$((SECONDS - start))
tail -n 1 "$out/run.log"
if [ ! -f "$out/mutants.out/outcomes.json" ]; then
    echo "mutants.sh: cargo-mutants did not finish (exit $status); see $out/run.log" >&2
    tail -n 20 "$out/run.log" >&2
    exit 2
fi
# Per file: caught, missed, unviable, timeouts, and caught of viable (timeouts count as
# caught: the tests did not pass).
python3 - "$out/mutants.out/outcomes.json" "$elapsed" <<'EOF'
import collections, json, sys
d = json.load(open(sys.argv[1]))
per = collections.defaultdict(collections.Counter)
missed = []
for o in d["outcomes"]:
    sc = o["scenario"]
    if not isinstance(sc, dict) or "Mutant" not in sc:
        if o["summary"] != "Success":
            print(f"mutants.sh: the unmutated tree does not pass its tests ({o['summary']})")
            sys.exit(2)
        continue
    m = sc["Mutant"]
    kind = {"CaughtMutant": "caught", "MissedMutant": "missed", "Unviable": "unviable",
            "Timeout": "timeout"}.get(o["summary"], o["summary"])
    per[m["file"]][kind] += 1
    if kind == "missed":
        missed.append(m["name"])
print(f"{'file':<32} {'caught':>6} {'missed':>6} {'unviable':>8} {'timeout':>7}  caught of viable")
tot = collections.Counter()
for f in sorted(per):
    c = per[f]
    tot.update(c)
    viable = c["caught"] + c["missed"] + c["timeout"]
    pct = f"{100 * (c['caught'] + c['timeout']) / viable:.0f}%" if viable else "-"
    print(f"{f:<32} {c['caught']:>6} {c['missed']:>6} {c['unviable']:>8} {c['timeout']:>7}  {pct}")
viable = tot["caught"] + tot["missed"] + tot["timeout"]
pct = f"{100 * (tot['caught'] + tot['timeout']) / viable:.0f}%" if viable else "-"
print(f"{'total':<32} {tot['caught']:>6} {tot['missed']:>6} {tot['unviable']:>8} {tot['timeout']:>7}  {pct}"
      f"  in {sys.argv[2]} s")
if missed:
    print("missed (a test should fail for each; or, if truly equivalent, exclude it in "
          ".cargo/mutants.toml with the reason):")
    for n in missed:
        print("  " + n)
sys.exit(1 if missed else 0)
EOF
