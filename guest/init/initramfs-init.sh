#!/bin/busybox sh
# vmpod guest, stage 1 (the initramfs's /init): load the modules that reach
# the root image, mount it read-only and switch to it. Everything else is done
# by the root image's init. Kept short: it is on every pod's boot path.
export PATH=/bin

# MODULES_BOOT: module files in /lib/modules, in load order (written by the build).
. /etc/vmpod-initramfs.conf

fail() {
	echo "vmpod: cannot mount the root image: $*"
	# Stop the VM (QEMU runs with -no-reboot): a guest that cannot boot must die visibly.
	reboot -f
	exit 1
}

mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev || fail "mount /dev"
mount -t proc -o nosuid,nodev,noexec proc /proc || fail "mount /proc"
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys || fail "mount /sys"

read -r cmdline </proc/cmdline
case " $cmdline " in
*" vmpod.debug=1 "*)
	read -r uptime _ </proc/uptime
	echo "vmpod: $uptime initramfs"
	;;
esac

for module in $MODULES_BOOT; do
	insmod "/lib/modules/$module" || fail "insmod $module"
done

# virtio_blk adds the disk while it probes; wait a little in case that is deferred.
tries=0
while [ ! -b /dev/vda ]; do
	tries=$((tries + 1))
	[ "$tries" -gt 300 ] && fail "no /dev/vda after 3 s"
	usleep 10000
done

mount -t erofs -o ro /dev/vda /newroot || fail "mount -t erofs /dev/vda"
for fs in dev proc sys; do
	mount --move "/$fs" "/newroot/$fs" || fail "move /$fs"
done
exec switch_root /newroot /sbin/init
