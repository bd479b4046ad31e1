package image_test

import (
	"bytes"
	"context"
	"debug/elf"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/bpfstatd/bpfstatd/deploy/image"
)

var platforms = []string{"linux/amd64", "linux/arm64"}

// built is one two-platform build shared by the tests, written as an
// archive.
var built struct {
	once    sync.Once
	archive []byte
	idx     v1.ImageIndex
	err     error
}

func build(t *testing.T) (v1.ImageIndex, []byte) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	built.once.Do(func() {
		src := os.Getenv("BPFSTATD_SOURCE")
		if src == "" {
			src = "../.."
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		built.idx, built.err = image.Build(ctx, image.Options{Source: src, Platforms: platforms})
		if built.err != nil {
			return
		}
		var buf bytes.Buffer
		built.err = image.WriteArchive(&buf, built.idx, "example.com/bpfstatd:v1", time.Time{})
		built.archive = buf.Bytes()
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.idx, built.archive
}

// TestArchive reads the archive back as an OCI image layout: for each
// platform, an image whose digests, sizes and layers check out.
func TestArchive(t *testing.T) {
	_, archive := build(t)
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range platforms {
		dir := t.TempDir()
		img, err := image.Open(path, dir, p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s: %v", p, err)
		}
		root, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Index(root); err != nil {
			t.Errorf("layout's index.json: %v", err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.OS+"/"+cf.Architecture != p || !cf.Created.Time.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: config for %s/%s created %v", p, cf.OS, cf.Architecture, cf.Created)
		}
		if !slices.Equal(cf.Config.Entrypoint, []string{image.Binary}) || !slices.Equal(cf.Config.Env, []string{"PATH=/usr/bin"}) || cf.Config.User != "0:0" {
			t.Errorf("%s: config %+v", p, cf.Config)
		}
	}
	if _, err := image.Open(path, t.TempDir(), "linux/s390x"); err == nil {
		t.Error("Open found an image for a platform that was not built")
	}
}

// TestContents unpacks the host's image: a static binary and the
// directories runtimes mount over, and nothing else.
func TestContents(t *testing.T) {
	idx, _ := build(t)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var img v1.Image
	for _, d := range im.Manifests {
		if d.Platform.OS+"/"+d.Platform.Architecture == image.DefaultPlatform() {
			img, err = idx.Image(d.Digest)
		}
	}
	if img == nil || err != nil {
		t.Fatalf("no image for %s: %v", image.DefaultPlatform(), err)
	}
	root := t.TempDir()
	if err := image.Unpack(img, root); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if rel, _ := filepath.Rel(root, path); rel != "." {
			got = append(got, rel)
		}
		return err
	})
	want := []string{"dev", "proc", "run", "sys", "tmp", "usr", "usr/bin", "usr/bin/bpfstatd"}
	if !slices.Equal(got, want) {
		t.Errorf("image holds %v, want %v", got, want)
	}
	f, err := elf.Open(filepath.Join(root, image.Binary))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("%s is dynamically linked (%v): an empty base has no libc", image.Binary, p.Type)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "tmp")); err != nil || fi.Mode()&os.ModeSticky == 0 {
		t.Errorf("/tmp not sticky: %v", fi.Mode())
	}
}

// TestPush pushes the archive's layout to a registry, as `crane push`
// would: the registry reports the digest Digest gave.
func TestPush(t *testing.T) {
	idx, archive := build(t)
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if _, err := image.Open(path, dir, image.DefaultPlatform()); err != nil {
		t.Fatal(err)
	}
	l, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := l.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	top, err := l.ImageIndex(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref, err := name.ParseReference(strings.TrimPrefix(srv.URL, "http://") + "/bpfstatd:test")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, top); err != nil {
		t.Fatal(err)
	}
	got, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}
	want, err := image.Digest(idx)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != want {
		t.Errorf("registry reports %s, Digest gave %s", got.Digest, want)
	}
}

// TestDigestIsTopLevel reports the index's digest for several platforms
// and the image's for one, as a registry does after a push.
func TestDigestIsTopLevel(t *testing.T) {
	idx, _ := build(t)
	d, err := image.Digest(idx)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := idx.Digest(); d != want {
		t.Errorf("Digest = %s, want the index's %s", d, want)
	}
}
