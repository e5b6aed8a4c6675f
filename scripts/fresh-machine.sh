#!/usr/bin/env bash
# fresh-machine.sh - run the README's two commands on a fresh Debian 12.
#
#   scripts/fresh-machine.sh [--test-only | --demo-only | --only CMD] [--also CMD]
#                            [--ref REF] [--keep] [--no-cache] [--verbose] [--dir DIR]
#
# Builds a minimal Debian 12 (debootstrap --variant=minbase) from this
# machine's own configured Debian mirror in a temporary folder, clones the
# COMMITTED tree of this repository into it (uncommitted changes are not
# included), and runs scripts/demo.sh, then scripts/test.sh, in it with
# chroot and a clean environment (env -i). Nothing of the host is shared but
# the kernel: no datasets, no packages; deps.sh must install everything.
#
# --test-only   run scripts/test.sh only (what .ci/run does)
# --demo-only   run scripts/demo.sh only
# --also CMD    then run CMD there too (e.g. 'bench/run.sh --quick --only W2')
# --only CMD    run CMD alone, on the bare fresh system
# --ref REF     test this commit (branch, tag, sha) instead of HEAD
# --keep        keep the folder (and its logs) instead of removing it
# --no-cache    debootstrap afresh and download every package again
#               (default: reuse a base tarball made by an earlier run, at most
#               7 days old, and the .deb files it downloaded; both under
#               /var/cache/backprop-fresh/)
# --verbose     stream each command's output (default: log it, print the
#               tail of the log on failure)
# --dir DIR     make the temporary folder under DIR (default: $TMPDIR or /var/tmp)
# Environment: BP_FRESH_MIRROR overrides the mirror found in /etc/apt.
#
# Exit status: 0 if every command passed, 1 if one failed, 2 for usage
# errors, 3 if the fresh system could not be built (mirror unreachable,
# debootstrap failed, mounts refused): .ci/run falls back to the host only on 3.
set -uo pipefail

SUITE=bookworm
CACHE=/var/cache/backprop-fresh
REPO=$(cd "$(dirname "$0")/.." && pwd)
ALSO="" RUN_DEMO=1 RUN_TEST=1 KEEP=0 USE_CACHE=1 VERBOSE=0 REF=HEAD PARENT=${TMPDIR:-/var/tmp}
while [ $# -gt 0 ]; do
  case "$1" in
    --test-only) RUN_DEMO=0 ;;
    --demo-only) RUN_TEST=0 ;;
    --also|--only) [ $# -ge 2 ] || { echo "fresh-machine: $1 needs a value" >&2; exit 2; }
                   [ "$1" = --only ] && RUN_DEMO=0 RUN_TEST=0
                   ALSO=$2; shift ;;
    --ref) [ $# -ge 2 ] || { echo "fresh-machine: --ref needs a value" >&2; exit 2; }; REF=$2; shift ;;
    --keep) KEEP=1 ;;
    --no-cache) USE_CACHE=0 ;;
    --verbose) VERBOSE=1 ;;
    --dir) [ $# -ge 2 ] || { echo "fresh-machine: --dir needs a value" >&2; exit 2; }; PARENT=$2; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "fresh-machine: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
[ $RUN_DEMO = 1 ] || [ $RUN_TEST = 1 ] || [ -n "$ALSO" ] ||
  { echo "fresh-machine: --test-only, --demo-only and --only exclude each other" >&2; exit 2; }
say() { echo "fresh-machine: $*"; }
die() { echo "fresh-machine: $1" >&2; exit "${2:-1}"; }
[ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot, mount)" 2

# --------------------------------------------------------------------------
# The commit to test (the committed tree only).
# --------------------------------------------------------------------------
SHA=$(git -C "$REPO" rev-parse --verify -q "$REF^{commit}") || die "not a commit: $REF" 2
dirty=$(git -C "$REPO" status --porcelain --untracked-files=no | wc -l)
say "testing the committed tree at $(git -C "$REPO" log -1 --format='%h %s' "$SHA")"
if [ "$REF" = HEAD ] && [ "$dirty" -gt 0 ]; then
  say "NOTE: $dirty uncommitted change(s) in $REPO are NOT included (commit them to test them)"
fi

# --------------------------------------------------------------------------
# The mirror: the URI of the main Debian archive in this machine's apt
# sources (deb822 *.sources or one-line *.list), the one serving $SUITE.
# --------------------------------------------------------------------------
find_uris() { # SUITE -> the URIs of "deb" entries for that suite, in order
  local suite=$1 f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [opts] URI SUITE COMPONENTS...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
      awk -v s="$suite" '$1 == "deb" && $3 == s { print $2 }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '
      function flush() { if (deb && hit && enabled) for (i = 1; i <= nu; i++) print u[i]
                         deb = hit = nu = 0; enabled = 1 }
      BEGIN { enabled = 1 }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1) }
      key == "types:"   { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
      key == "uris:"    { for (i = 2; i <= NF; i++) u[++nu] = $i }
      key == "suites:"  { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
      key == "enabled:" { if (tolower($2) == "no") enabled = 0 }
      END { flush() }' "$f"
  done
}
MIRROR=${BP_FRESH_MIRROR:-$(find_uris "$SUITE" | head -n 1)}
[ -n "$MIRROR" ] || die "no Debian mirror for '$SUITE' in /etc/apt/sources.list{,.d/}; set BP_FRESH_MIRROR" 3
MIRROR=${MIRROR%/}
SECURITY=$(find_uris "$SUITE-security" | head -n 1)
say "mirror $MIRROR${SECURITY:+ (security: $SECURITY)}"

# --------------------------------------------------------------------------
# Temporary folder, and the cleanup that runs however we exit: stop what
# still runs in the chroot, unmount (innermost first), check that nothing
# is mounted below the folder, and only then remove it, without crossing
# into another file system even so.
# --------------------------------------------------------------------------
mkdir -p "$PARENT" || die "cannot create $PARENT" 2
WORK=$(mktemp -d "$PARENT/backprop-fresh.XXXXXX") || die "mktemp failed in $PARENT" 2
ROOTFS=$WORK/root
mkdir -p "$ROOTFS"
mounts_below() { awk -v r="$ROOTFS/" 'index($5 "/", r) == 1 { print $5 }' /proc/self/mountinfo; }
CHILD=""
step() { # run "$@" in its own process group, so a signal can stop all of it
  set -m
  "$@" &
  CHILD=$!
  set +m
  wait "$CHILD"
  local rc=$?
  CHILD=""
  return $rc
}
cleanup() {
  local rc=$? p pid tries
  trap - EXIT INT TERM
  if [ -n "$CHILD" ]; then  # the step we were waiting for (debootstrap, a command)
    kill -TERM -- "-$CHILD" 2>/dev/null; sleep 1; kill -KILL -- "-$CHILD" 2>/dev/null
  fi
  for tries in 1 2 3; do  # processes left in the chroot (started by this script)
    pid=""
    for p in /proc/[0-9]*; do
      [ "$(readlink "$p/root" 2>/dev/null)" = "$ROOTFS" ] && pid="$pid ${p#/proc/}"
    done
    [ -n "$pid" ] || break
    # shellcheck disable=SC2086
    kill -TERM $pid 2>/dev/null; sleep 1
    [ $tries = 3 ] && kill -KILL $pid 2>/dev/null
  done
  for tries in 1 2 3; do
    mounts_below | sort -r | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m"; done
    [ -z "$(mounts_below)" ] && break
    sleep 1
  done
  if [ -n "$(mounts_below)" ]; then
    echo "fresh-machine: still mounted below $ROOTFS, NOT removing $WORK:" >&2
    mounts_below >&2
    [ $rc -eq 0 ] && rc=1
  elif [ $KEEP = 1 ]; then
    say "kept $WORK (logs: $WORK/*.log; chroot $ROOTFS /bin/bash to look around)"
  else
    rm -rf --one-file-system "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'echo "fresh-machine: interrupted" >&2; exit 130' INT
trap 'echo "fresh-machine: terminated" >&2; exit 143' TERM

fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# --------------------------------------------------------------------------
# The base system: debootstrap, or a tarball of an earlier debootstrap
# (taken right after it finished, before anything else was installed).
# --------------------------------------------------------------------------
if ! command -v debootstrap >/dev/null; then
  say "installing debootstrap"
  { DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap; } \
    >"$WORK/debootstrap-install.log" 2>&1 || { tail -n 20 "$WORK/debootstrap-install.log" >&2
                                               die "cannot install debootstrap" 3; }
fi
# Reachable at all? Checked even with a cached base, since the packages come
# from there too; a clear message rather than debootstrap's or apt's.
if ! /usr/lib/apt/apt-helper download-file "$MIRROR/dists/$SUITE/Release" "$WORK/Release" \
     >"$WORK/mirror-check.log" 2>&1; then
  tail -n 5 "$WORK/mirror-check.log" >&2
  die "mirror $MIRROR unreachable: the fresh system cannot be built" 3
fi
mkey=$(printf '%s' "$MIRROR" | md5sum | cut -c1-12)
BASE=$CACHE/$SUITE-minbase-$mkey.tar.gz
t0=$SECONDS
if [ $USE_CACHE = 1 ] && [ -n "$(find "$BASE" -mtime -7 2>/dev/null)" ]; then
  say "base system: unpacking $BASE (made $(date -r "$BASE" '+%F %R'); --no-cache to debootstrap afresh)"
  tar -xzpf "$BASE" --numeric-owner -C "$ROOTFS" || die "cannot unpack $BASE (remove it and retry)" 3
else
  say "base system: debootstrap --variant=minbase $SUITE from $MIRROR (log: debootstrap.log)"
  if ! step debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" </dev/null >>"$WORK/debootstrap.log" 2>&1; then
    tail -n 20 "$WORK/debootstrap.log" >&2
    die "debootstrap failed: the fresh system cannot be built" 3
  fi
  if [ $USE_CACHE = 1 ] && mkdir -p "$CACHE"; then
    tar -czpf "$BASE.tmp.$$" --numeric-owner -C "$ROOTFS" . && mv -f "$BASE.tmp.$$" "$BASE" &&
      say "base system cached as $BASE" || rm -f "$BASE.tmp.$$"
  fi
fi
say "base system ready in $(fmt_time $((SECONDS - t0)))"

# apt sources: the same mirror (and security archive) as the host's.
{
  echo "deb $MIRROR $SUITE main"
  echo "deb $MIRROR $SUITE-updates main"
  [ -n "$SECURITY" ] && echo "deb ${SECURITY%/} $SUITE-security main"
} >"$ROOTFS/etc/apt/sources.list"
rm -f "$ROOTFS"/etc/apt/sources.list.d/*
# Name resolution and any apt proxy, so the chroot reaches the mirror as the host does.
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null
cp -L /etc/hosts "$ROOTFS/etc/hosts" 2>/dev/null
grep -rhi '^[^#]*Acquire::.*Proxy' /etc/apt/apt.conf /etc/apt/apt.conf.d/ 2>/dev/null \
  >"$ROOTFS/etc/apt/apt.conf.d/01proxy-from-host" || rm -f "$ROOTFS/etc/apt/apt.conf.d/01proxy-from-host"
# PyPI as the host reaches it (the ONNX tests pip-install onnxruntime into a
# venv): the host's pip settings, with the CA bundle they trust copied in
# (a fresh system's own bundle lacks a site's proxy CA). Nothing else.
pip_cert=$(sed -n 's/^[[:space:]]*cert[[:space:]]*=[[:space:]]*//p' /etc/pip.conf 2>/dev/null | head -n 1)
[ -z "$pip_cert" ] && pip_cert=${PIP_CERT:-}
if [ -n "$pip_cert" ] && [ -r "$pip_cert" ]; then
  cp -L "$pip_cert" "$ROOTFS/etc/pip-host-ca.pem"
  printf '[global]\ncert = /etc/pip-host-ca.pem\n' >"$ROOTFS/etc/pip.conf"
  grep -hiE '^[[:space:]]*(index-url|extra-index-url|trusted-host|proxy)[[:space:]]*=' /etc/pip.conf \
    2>/dev/null >>"$ROOTFS/etc/pip.conf"
fi

# --------------------------------------------------------------------------
# Mounts: our own proc, sysfs (read-only), and a /dev of our own (tmpfs with
# the usual nodes, a private devpts, a tmpfs /dev/shm): the host's /dev is
# never mounted inside, so nothing can delete its nodes. /usr/share/datasets
# and the rest of the host stay outside.
# --------------------------------------------------------------------------
NOSETUP=": the fresh system cannot be set up here"
mount -t proc proc "$ROOTFS/proc" || die "cannot mount proc$NOSETUP" 3
mount -t sysfs -o ro sysfs "$ROOTFS/sys" || mount --rbind -o ro /sys "$ROOTFS/sys" ||
  die "cannot mount sysfs$NOSETUP" 3
mount -t tmpfs -o mode=755,size=16m,nosuid tmpfs "$ROOTFS/dev" ||
  die "cannot mount a tmpfs on dev$NOSETUP" 3
for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do
  set -- $n
  mknod -m 666 "$ROOTFS/dev/$1" c "$2" "$3" 2>/dev/null ||
    { touch "$ROOTFS/dev/$1" && mount --bind "/dev/$1" "$ROOTFS/dev/$1"; } ||
    die "cannot make /dev/$1$NOSETUP" 3
done
mkdir -p "$ROOTFS/dev/pts" "$ROOTFS/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts "$ROOTFS/dev/pts" ||
  die "cannot mount devpts$NOSETUP" 3
ln -s pts/ptmx "$ROOTFS/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$ROOTFS/dev/shm" ||
  die "cannot mount dev/shm$NOSETUP" 3
ln -s /proc/self/fd "$ROOTFS/dev/fd"
ln -s /proc/self/fd/0 "$ROOTFS/dev/stdin"
ln -s /proc/self/fd/1 "$ROOTFS/dev/stdout"
ln -s /proc/self/fd/2 "$ROOTFS/dev/stderr"
if [ $USE_CACHE = 1 ] && mkdir -p "$CACHE/archives/partial"; then
  # Downloaded .deb files only: apt inside still updates its lists from the
  # mirror and installs every package itself. One run at a time uses it (apt
  # locks the folder); a second run downloads into its own.
  exec 9>"$CACHE/archives.lock"
  if flock -n 9; then
    mount --bind "$CACHE/archives" "$ROOTFS/var/cache/apt/archives" || die "cannot mount the .deb cache" 1
  else
    say "another run is using $CACHE/archives: downloading every package"
  fi
fi

# --------------------------------------------------------------------------
# The committed tree, cloned (not copied: no build dirs, no local files).
# --------------------------------------------------------------------------
DEST=/root/backprop
git clone -q --no-hardlinks --no-checkout "$REPO" "$ROOTFS$DEST" 2>"$WORK/clone.log" &&
  git -C "$ROOTFS$DEST" -c advice.detachedHead=false checkout -q --detach "$SHA" 2>>"$WORK/clone.log" ||
  { cat "$WORK/clone.log" >&2; die "cannot clone $SHA into the fresh system" 1; }

# --------------------------------------------------------------------------
# The commands, each in a clean environment, with its time; the tail of its
# output on failure.
# --------------------------------------------------------------------------
in_chroot() { # COMMAND LOG: COMMAND in the fresh system, clean environment, output to LOG
  local clean=(/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
               HOME=/root LANG=C.UTF-8 TERM=dumb)
  if [ $VERBOSE = 1 ]; then
    chroot "$ROOTFS" "${clean[@]}" /bin/bash -c "cd $DEST && $1" </dev/null 2>&1 | tee "$2"
    return "${PIPESTATUS[0]}"
  fi
  chroot "$ROOTFS" "${clean[@]}" /bin/bash -c "cd $DEST && $1" </dev/null >"$2" 2>&1
}
FAILED=0 NRUN=0
run_in_fresh() { # LOGNAME COMMAND
  local log=$WORK/$1.log cmd=$2 t=$SECONDS rc
  NRUN=$((NRUN + 1))
  say "running '$cmd' in the fresh system (log: $1.log)"
  step in_chroot "$cmd" "$log"
  rc=$?
  local took
  took=$(fmt_time $((SECONDS - t)))
  if [ $rc -eq 0 ]; then
    say "PASSED '$cmd' in $took"
  else
    if [ $VERBOSE = 0 ]; then
      echo "---- last 40 lines of $1.log ----"
      tail -n 40 "$log"
      echo "----"
    fi
    say "FAILED '$cmd' (exit $rc) after $took"
    FAILED=$((FAILED + 1))
  fi
  TIMES="${TIMES:-}  $cmd: $took ($([ $rc -eq 0 ] && echo passed || echo "FAILED, exit $rc"))
"
  return $rc
}
[ $RUN_DEMO = 1 ] && run_in_fresh demo scripts/demo.sh
[ $RUN_TEST = 1 ] && run_in_fresh test scripts/test.sh
[ -n "$ALSO" ] && run_in_fresh also "$ALSO"

# Closing lines: each command's time, CTest's summaries, and a count that
# CI reads as the last line.
echo
say "commit $(git -C "$REPO" rev-parse --short "$SHA") on a fresh Debian 12 ($SUITE, minbase) from $MIRROR"
printf '%s' "$TIMES"
if [ $RUN_TEST = 1 ]; then
  grep -E 'tests passed, [0-9]+ tests failed out of' "$WORK/test.log" | sed 's/^/  ctest: /'
  awk '/tests passed, [0-9]+ tests failed out of/ { n = $NF; f = $4; p += n - f; fl += f; seen = 1 }
       END { if (!seen) { p = 0; fl = 1 } print p, fl }' "$WORK/test.log" >"$WORK/counts"
  read -r np nf <"$WORK/counts"
  [ $FAILED -gt 0 ] && [ "$nf" -eq 0 ] && nf=1   # the command failed outside CTest
  echo "fresh-machine: $np passed, $nf failed"
else
  echo "fresh-machine: $((NRUN - FAILED)) passed, $FAILED failed"
fi
[ $FAILED -eq 0 ]
