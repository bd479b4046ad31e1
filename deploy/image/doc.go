// Package image builds bpfstatd's container image without a container
// engine, reproducibly: the same source and Go toolchain give the same
// bytes, and so the same digest, on any machine, at any time, from any
// directory.
//
// # What is in the image
//
// One layer on an empty base: the static daemon at /usr/bin/bpfstatd
// (built with CGO_ENABLED=0, -trimpath, -buildvcs=false and no build ID),
// and the empty directories a container runtime mounts over (/dev, /proc,
// /run, /sys, /tmp). There is no shell, no libc and no /etc/passwd: the
// daemon runs as uid 0 with only the capabilities its manifest grants, and
// needs none of them.
//
// # Reproducibility
//
// Every timestamp in the layer and the configuration is the build epoch
// (SOURCE_DATE_EPOCH, or 1970-01-01 when unset); tar entries are sorted and
// owned by 0:0 with fixed modes; the layer is gzipped with an empty header;
// the Go build environment is pinned (GOFLAGS, GOAMD64, GOARM64) apart from
// the toolchain itself.
//
// # Output
//
// [WriteArchive] writes an OCI image layout as one tar file (an
// "oci-archive"), which skopeo, crane, podman, containerd's ctr, kind and
// Docker 25 or later can load or push. Its index.json names one image, or
// an image index when more than one platform is built.
package image
