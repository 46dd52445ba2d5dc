#!/bin/bash
# PID 1 of a user-mode Linux guest started by src/lab/uml.ts. It runs INSIDE the guest, not on the host.
#
# The root file system is the host's / read-only (hostfs). The kernel hands its KEY=VAL arguments to init as
# environment (values cannot contain spaces, hence a directory rather than a command line):
#   UF_DIR      a writable host directory, mounted here as hostfs at the same path. It holds script.sh (what
#               to run); the guest writes output (the script's stdout+stderr) and status (its exit code,
#               written last) there, and whatever files the script uses to talk to the host.
#   UF_MODULES  comma-separated modules to load before the script (tun,ipip,...).
# It never exits by itself (PID 1 exiting panics the kernel): it syncs and powers off with sysrq, and linux.uml
# then exits 0. The host wraps linux.uml in `timeout` in case this never happens.
export PATH=/run/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
poweroff_now() {
  sync
  echo o > /proc/sysrq-trigger
  sleep 60
}
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /dev/net
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
echo 1 > /proc/sys/kernel/sysrq
# UF_DIR may be under /tmp, which is now a tmpfs here: make the mount point, then mount the host directory.
mkdir -p "$UF_DIR" 2>/dev/null
if [ -z "$UF_DIR" ] || ! mount -t hostfs -o "$UF_DIR" hostfs "$UF_DIR"; then
  echo "uml-init: cannot mount UF_DIR=$UF_DIR" >&2
  poweroff_now
fi
# Module loading without the host's /lib/modules: modprobe -d ROOT with ROOT/lib/modules -> the UML modules,
# for us and for the kernel's own requests (/proc/sys/kernel/modprobe, e.g. `ip link add type bridge`).
rel=$(uname -r)
mkdir -p /run/modroot/lib/modules /run/bin
ln -s "/usr/lib/uml/modules/$rel" "/run/modroot/lib/modules/$rel"
printf '#!/bin/sh\nexec /sbin/modprobe -d /run/modroot "$@"\n' > /run/bin/modprobe
chmod 755 /run/bin/modprobe
echo /run/bin/modprobe > /proc/sys/kernel/modprobe
for m in ${UF_MODULES//,/ }; do modprobe "$m" || echo "uml-init: modprobe $m failed" >&2; done
ip link set lo up
hostname "${UF_HOSTNAME:-uml}"
cd "$UF_DIR" || poweroff_now
bash "$UF_DIR/script.sh" > "$UF_DIR/output" 2>&1 < /dev/null
echo "$?" > "$UF_DIR/status.tmp"
sync
mv "$UF_DIR/status.tmp" "$UF_DIR/status"
sync
poweroff_now
