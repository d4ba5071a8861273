#!/bin/busybox sh
# PID 1 from the initramfs (busybox): mount the host root read-only over 9p, give it fresh
# /tmp, /run and /dev, put this kernel's modules at /lib/modules, then hand PID 1 to stage2.sh.
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin

fail() {
  echo "ringfence-init: $*"
  echo "@@RINGFENCE-INIT-FAILED@@"
  echo o >/proc/sysrq-trigger
  sleep 10
  exit 1
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev

# 9p stack, dependencies first (order computed from this kernel's modules.dep at build time).
while read -r m; do
  insmod "/modules/$m.ko" || fail "insmod $m"
done </modules/load-order

R=/newroot
P9=trans=virtio,version=9p2000.L,msize=512000
mount -t 9p -o "$P9,ro,cache=loose" hostroot $R || fail "mount of the host root (9p tag hostroot) failed"
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=755 tmpfs $R/run
mkdir -p $R/run/rfout
# Writable share, no cache: results and the exit code must reach the host before power-off.
mount -t 9p -o "$P9,rw" rfout $R/run/rfout || fail "mount of the results share (9p tag rfout) failed"
. $R/run/rfout/boot.conf || fail "no boot.conf in the results share"

mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm

# The kernel's own module autoloading runs /sbin/modprobe in the (changed) root, which reads
# /lib/modules/$(uname -r): show it this kernel's depmod'ed tree, as on an installed system.
dst=$R$RF_MODULES_DST
if [ ! -d "$dst" ]; then
  # The host has no /lib/modules (typical in containers) and its root is read-only here:
  # overlay the parent with a tmpfs upper layer that adds an empty mount point.
  parent=${dst%/*}
  mkdir -p /ovl && mount -t tmpfs tmpfs /ovl && mkdir -p /ovl/upper/${dst##*/} /ovl/work
  mount -t overlay -o "lowerdir=$parent,upperdir=/ovl/upper,workdir=/ovl/work" overlay "$parent" ||
    fail "cannot create $RF_MODULES_DST in the guest (overlay on $parent failed)"
fi
mount -o bind,ro "$R$RF_MODULES_SRC" "$dst" || fail "bind mount of $RF_MODULES_SRC on $RF_MODULES_DST failed"

# A project under /tmp or /run would be hidden by the tmpfs above: share it at the same path.
if [ -n "$RF_PROJECT_SHARE" ]; then
  mkdir -p "$R$RF_PROJECT"
  mount -t 9p -o "$P9,ro,cache=loose" rfproject "$R$RF_PROJECT" || fail "mount of the project share failed"
fi

mkdir -p $R/run/ringfence && cp /stage2.sh $R/run/ringfence/stage2.sh
cp /bin/busybox $R/run/ringfence/busybox # for a synchronous power-off at the end
# exec, not a child: PID 1 shares its root with the kernel threads, so after this chroot the
# kernel's usermode helpers (request_module -> /sbin/modprobe) run inside the host root too.
exec chroot $R /bin/sh /run/ringfence/stage2.sh
