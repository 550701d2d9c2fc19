#!/usr/bin/env bash
# Builds the Debian 12 guest for the host tests (integration/host) from
# Debian packages only: build.sh OUTDIR. Writes OUTDIR/disk.raw (2 GiB
# sparse ext4, the root file system), OUTDIR/vmlinuz and OUTDIR/initrd.img.
# The caller (vm_test.go) caches OUTDIR by the hash of this directory's
# files, so any change here rebuilds the image. Needs root, mmdebstrap and
# e2fsprogs; ~45 s plus the download.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
# The Debian mirror this machine's apt uses (deb822 .sources or one-line
# lists), not the security archive; EC2PR_HOST_MIRROR overrides.
host_mirror() {
  {
    awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true
    awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; break}}' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true
  } | grep -v -e security -e '^$' | head -n 1 || true
}
mirror=${EC2PR_HOST_MIRROR:-$(host_mirror)}
mirror=${mirror:-http://deb.debian.org/debian}
echo "build.sh: mirror $mirror"
work=$(mktemp -d "${out%/}.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

mmdebstrap --quiet --variant=minbase --include="$(paste -sd, "$here/packages.txt")" \
  bookworm "$root" "$mirror"

# The lab's dummy "ENIs" must pass for ENA ones (test-only rule, see files/).
install -m 0644 "$here/files/90-ec2pr-test-ena.rules" "$root/etc/udev/rules.d/"
# The scenario runner: waits for the boot to finish, runs the scenario from
# the second disk, powers off.
install -m 0755 "$here/files/ec2pr-runner" "$root/usr/local/sbin/"
install -m 0644 "$here/files/ec2pr-scenario.service" "$root/etc/systemd/system/"
echo ec2pr-host >"$root/etc/hostname"
# A fixed machine id: no first-boot logic; the journal is persistent so a
# later boot can read an earlier one.
echo 0d2ec2c0ffee4a11b0075eed0000a0e1 >"$root/etc/machine-id"
mkdir -p "$root/var/log/journal"
# ec2-net-utils' start calls systemd-networkd-wait-online, so networkd runs
# as on an EC2 host; the wait-online *service* only delays this NIC-less boot.
chroot "$root" systemctl enable --quiet systemd-networkd.service ec2pr-scenario.service
chroot "$root" systemctl disable --quiet systemd-networkd-wait-online.service
chroot "$root" systemctl mask --quiet serial-getty@ttyS0.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer 2>/dev/null || true

cp "$root"/boot/vmlinuz-* "$work/vmlinuz"
cp "$root"/boot/initrd.img-* "$work/initrd.img"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
mkfs.ext4 -q -F -L ec2pr-root -d "$root" "$work/disk.raw" 2G

mkdir -p "$out"
mv "$work/disk.raw" "$work/vmlinuz" "$work/initrd.img" "$out/"
