package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Binary is where the daemon is in the image; the image's PATH holds its
// directory, so `kubectl exec POD -- bpfstatd --drops` finds it.
const Binary = "/usr/bin/bpfstatd"

// Options say what to build. The zero value of every field but Source
// works.
type Options struct {
	// Source is the directory of the bpfstatd module (the one holding its
	// go.mod).
	Source string
	// Platforms to build, such as "linux/amd64". Empty means the host's.
	Platforms []string
	// Epoch is every timestamp in the image. Zero means 1970-01-01.
	Epoch time.Time
	// Env is appended to the go command's environment last, so it can set
	// GOCACHE or the go command's other variables (not the pinned ones).
	Env []string
	// Log receives the output of the go command; nil discards it.
	Log io.Writer
}

// DefaultPlatform is the host's platform, which Build uses when
// Options.Platforms is empty.
func DefaultPlatform() string { return "linux/" + runtime.GOARCH }

// pinnedEnv is the part of the build environment that decides the
// binary's bytes, whatever the caller's environment says.
func pinnedEnv(arch string) []string {
	return []string{
		"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + arch,
		"GOFLAGS=-mod=readonly", "GOAMD64=v1", "GOARM64=v8.0", "GOEXPERIMENT=",
	}
}

// Build compiles the daemon for each platform and returns an index that
// holds one image per platform, in the order given.
func Build(ctx context.Context, o Options) (v1.ImageIndex, error) {
	platforms := o.Platforms
	if len(platforms) == 0 {
		platforms = []string{DefaultPlatform()}
	}
	epoch := o.Epoch
	if epoch.IsZero() {
		epoch = time.Unix(0, 0)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		plat, err := v1.ParsePlatform(p)
		if err != nil {
			return nil, fmt.Errorf("parse platform %q: %w", p, err)
		}
		if plat.OS != "linux" {
			return nil, fmt.Errorf("platform %q: bpfstatd runs only on linux", p)
		}
		bin, err := buildBinary(ctx, o, plat.Architecture)
		if err != nil {
			return nil, err
		}
		img, err := newImage(bin, *plat, epoch.UTC())
		if err != nil {
			return nil, fmt.Errorf("assemble image for %s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: plat},
		})
	}
	return idx, nil
}

// buildBinary runs go build in o.Source and returns the binary.
func buildBinary(ctx context.Context, o Options, arch string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "bpfstatd-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "bpfstatd")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w -buildid=", "-o", out, "./cmd/bpfstatd")
	cmd.Dir = o.Source
	cmd.Env = buildEnv(os.Environ(), pinnedEnv(arch), o.Env)
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if o.Log != nil {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&msg, o.Log), io.MultiWriter(&msg, o.Log)
	}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go build for linux/%s in %s: %w\n%s", arch, o.Source, err, msg.Bytes())
	}
	return os.ReadFile(out)
}

// buildEnv is base without the variables pinned sets, then pinned, then
// extra, except where extra would override a pinned variable.
func buildEnv(base, pinned, extra []string) []string {
	key := func(kv string) string { k, _, _ := strings.Cut(kv, "="); return k }
	isPinned := func(kv string) bool {
		return slices.ContainsFunc(pinned, func(p string) bool { return key(p) == key(kv) })
	}
	env := slices.DeleteFunc(slices.Clone(base), isPinned)
	env = append(env, pinned...)
	for _, kv := range extra {
		if !isPinned(kv) {
			env = append(env, kv)
		}
	}
	return env
}

// newImage puts bin on an empty base for plat.
func newImage(bin []byte, plat v1.Platform, epoch time.Time) (v1.Image, error) {
	layer, err := newLayer(bin, epoch)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: "go build -trimpath -buildvcs=false ./cmd/bpfstatd (CGO_ENABLED=0)",
			Comment:   "bpfstatd on an empty base",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Created = v1.Time{Time: epoch}
	cf.Config = v1.Config{
		Entrypoint: []string{Binary},
		Env:        []string{"PATH=" + filepath.Dir(Binary)},
		WorkingDir: "/",
		User:       "0:0",
		Labels: map[string]string{
			"org.opencontainers.image.title":       "bpfstatd",
			"org.opencontainers.image.description": "eBPF host metrics shipped as DogStatsD to the node-local agent",
			"org.opencontainers.image.source":      "https://github.com/bpfstatd/bpfstatd",
		},
	}
	return mutate.ConfigFile(img, cf)
}

// entry is one file or directory of the layer.
type entry struct {
	name string
	mode int64
	data []byte // nil for a directory
}

// newLayer is the gzipped tar of the image's one layer: the directories a
// runtime mounts over, and the binary.
func newLayer(bin []byte, epoch time.Time) (v1.Layer, error) {
	entries := []entry{
		{"dev/", 0o755, nil},
		{"proc/", 0o555, nil},
		{"run/", 0o755, nil},
		{"sys/", 0o555, nil},
		{"tmp/", 0o1777, nil},
		{"usr/", 0o755, nil},
		{"usr/bin/", 0o755, nil},
		{strings.TrimPrefix(Binary, "/"), 0o755, bin},
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if err := writeTar(zw, entries, epoch); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	blob := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(blob)), nil
	}, tarball.WithMediaType(types.OCILayer))
}

// writeTar writes entries, in the order given, owned by 0:0 and dated
// epoch.
func writeTar(w io.Writer, entries []entry, epoch time.Time) error {
	tw := tar.NewWriter(w)
	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.name,
			Mode:    e.mode,
			ModTime: epoch,
			Format:  tar.FormatPAX,
		}
		if e.data == nil {
			hdr.Typeflag = tar.TypeDir
		} else {
			hdr.Typeflag = tar.TypeReg
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write tar header %s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("write %s: %w", e.name, err)
		}
	}
	return tw.Close()
}
