#!/bin/sh
# vmpod guest, stage 2 (/sbin/init of the read-only root image): mount what the
# agent needs, load the remaining modules, start the agent, and stop the VM
# when the agent exits, so that its death is visible on the host (QEMU runs
# with -no-reboot and the kernel reboots by triple fault: QEMU exits).
#
# Nothing here is pod-specific: hostname, network, DNS and mounts come later,
# from the agent. Every command run is a fork and an exec, slow under TCG:
# shell builtins are used where they do the job.
export PATH=/usr/sbin:/usr/bin
export HOME=/root
umask 022
cd /

# KERNEL_VERSION, MODULES_AGENT, MODULES_LATER, NODE_FLAGS (written by the build).
. /usr/lib/vmpod/init.conf

say() {
	echo "vmpod: $*"
}

stop() {
	reboot -f
	# Only reached if the reboot system call failed: PID 1 exiting panics the
	# kernel, and panic=-1 reboots it.
	exit 1
}

# The initramfs moved /dev, /proc and /sys here; mount them if it did not.
[ -e /proc/self ] || mount -t proc -o nosuid,nodev,noexec proc /proc
[ -d /sys/kernel ] || mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
[ -c /dev/null ] || mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev

read -r cmdline </proc/cmdline
case " $cmdline " in *" vmpod.debug=1 "*) debug=1 ;; *) debug= ;; esac
# With vmpod.debug=1: "vmpod: UPTIME step" lines, to see where boot time goes.
mark() {
	[ -n "$debug" ] || return 0
	read -r uptime _ </proc/uptime
	say "$uptime $*"
}
mark "root init"

# /etc/fstab: /dev/pts (ptmxmode=0666), /dev/shm, /run, /tmp (tmpfs), /sys/fs/cgroup (cgroup2).
mkdir -p /dev/pts /dev/shm
mount -a || say "mount -a failed"
ln -s /proc/self/fd /dev/fd
ln -s fd/0 /dev/stdin
ln -s fd/1 /dev/stdout
ln -s fd/2 /dev/stderr

# The root image is read-only: /etc/hostname, /etc/hosts and /etc/resolv.conf
# are symlinks into /run/vmpod/etc, which the agent rewrites for the pod.
mkdir -p /run/vmpod/etc
echo localhost >/run/vmpod/etc/hostname
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >/run/vmpod/etc/hosts
: >/run/vmpod/etc/resolv.conf

# cgroup v2, with the controllers containers use delegated to the children.
if read -r available </sys/fs/cgroup/cgroup.controllers; then
	enable=
	for controller in cpuset cpu io memory hugetlb pids; do
		case " $available " in *" $controller "*) enable="$enable +$controller" ;; esac
	done
	[ -z "$enable" ] || echo $enable >/sys/fs/cgroup/cgroup.subtree_control || say "cannot enable cgroup controllers:$enable"
else
	say "no cgroup2 at /sys/fs/cgroup"
fi
mark "mounts done"

moddir=/usr/lib/modules/$KERNEL_VERSION
for module in $MODULES_AGENT; do
	insmod "$moddir/$module" || say "insmod $module failed"
done
# The rest loads while the agent starts; the agent waits for
# /run/vmpod/modules-ready before it needs them (network, vsock, virtio-fs, overlay).
(
	for module in $MODULES_LATER; do
		insmod "$moddir/$module" || say "insmod $module failed"
	done
	: >/run/vmpod/modules-ready
	mark "modules ready"
) &

ip link set lo up || say "loopback up failed"
mark "agent start"

case " $cmdline " in
*" vmpod.floor=1 "*)
	say "floor reached, stopping"
	stop
	;;
esac

/usr/bin/node $NODE_FLAGS /usr/lib/vmpod/agent.js
status=$?
say "agent exited with status $status"
stop
