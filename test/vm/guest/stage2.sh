# PID 1 inside the host root (run by the host's /bin/sh): load modules the way
# systemd-modules-load would, run the command, report its status, power off.
. /run/rfout/boot.conf

wanted=
for f in "$RF_PROJECT"/deploy/modules-load.d/*.conf; do
  [ -f "$f" ] || continue
  while read -r m rest; do
    case $m in '' | '#'* | ';'*) continue ;; esac
    wanted="$wanted $m"
  done <"$f"
done
# One modprobe for all (each start re-reads the indexes over 9p); built-in modules succeed too.
failed=
if [ -n "$wanted" ] && ! modprobe -a $wanted; then
  for m in $wanted; do modprobe "$m" 2>/dev/null || failed="$failed $m"; done
  echo "ringfence-guest: modules-load failed:$failed"
fi

mkdir -p /tmp/home
# The host retries a guest that crashes before this point, never after it (run-in-guest.ts).
: >/run/rfout/started
echo "@@RINGFENCE-STARTED-$RF_NONCE@@" # lets the host measure boot time
set -- env -i RINGFENCE_MODULES_LOAD_FAILED="${failed# }" /bin/sh /run/rfout/cmd.sh
if [ "$RF_INTERACTIVE" = 1 ]; then
  # New session with ttyS0 as controlling tty, so that ^C and job control work in a debug shell.
  setsid -c -w "$@" </dev/ttyS0 >/dev/ttyS0 2>&1
  rc=$?
else
  # Through a pipe: the command sees no tty (like CI) and its stderr stays in order with stdout.
  rm -f /run/ringfence/rc
  { "$@" </dev/null 2>&1; echo $? >/run/ringfence/rc; } | cat &
  reader=$!
  # cat ends when every writer of the pipe has closed it: a process the command left running with
  # its output would keep the guest up until the host's guard. Once the command is done, such
  # processes get 5 s, then are ended (as a shutdown would), so the status is reported at once.
  while [ ! -s /run/ringfence/rc ] && kill -0 "$reader" 2>/dev/null; do sleep 1; done
  i=0
  while kill -0 "$reader" 2>/dev/null && [ "$i" -lt 5 ]; do sleep 1; i=$((i + 1)); done
  if kill -0 "$reader" 2>/dev/null; then
    echo "ringfence-guest: processes still hold the command's output after it exited; ending them"
    kill -TERM -1 2>/dev/null
    sleep 1
    kill -KILL -1 2>/dev/null
  fi
  wait "$reader" 2>/dev/null
  rc=$(cat /run/ringfence/rc 2>/dev/null || echo 1)
fi

echo "$rc" >/run/rfout/exit-code
sync
echo "@@RINGFENCE-EXIT-$RF_NONCE=$rc@@"
# reboot(2) right away; sysrq would power off asynchronously while PID 1 still runs.
/run/ringfence/busybox poweroff -f
echo o >/proc/sysrq-trigger
