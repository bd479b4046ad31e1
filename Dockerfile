# syntax=docker/dockerfile:1
#
# bpfstatd's image, for those who build with Docker (BuildKit):
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/bpfstatd:TAG --push .
#
# It holds what `make image` builds: the static daemon at /usr/bin/bpfstatd
# on an empty base, and the directories a runtime mounts over. `make image`
# needs no container engine and gives the same digest on every machine;
# this file gives the same files, but Docker's layer timestamps differ from
# build to build unless SOURCE_DATE_EPOCH is set and BuildKit rewrites them.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS TARGETARCH
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOFLAGS=-mod=readonly GOAMD64=v1 GOARM64=v8.0 \
	go build -trimpath -buildvcs=false -ldflags="-s -w -buildid=" -o /rootfs/usr/bin/bpfstatd ./cmd/bpfstatd \
	&& mkdir -p /rootfs/dev /rootfs/proc /rootfs/run /rootfs/sys /rootfs/tmp \
	&& chmod 0555 /rootfs/proc /rootfs/sys && chmod 1777 /rootfs/tmp

FROM scratch
COPY --from=build /rootfs/ /
ENV PATH=/usr/bin
USER 0:0
WORKDIR /
LABEL org.opencontainers.image.title="bpfstatd" \
	org.opencontainers.image.description="eBPF host metrics shipped as DogStatsD to the node-local agent" \
	org.opencontainers.image.source="https://github.com/bpfstatd/bpfstatd"
ENTRYPOINT ["/usr/bin/bpfstatd"]
