package image

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Digest is what a registry reports after a push of idx as one reference:
// the image's digest when idx holds one image, the index's otherwise.
func Digest(idx v1.ImageIndex) (v1.Hash, error) {
	top, err := topDescriptor(idx)
	if err != nil {
		return v1.Hash{}, err
	}
	return top.Digest, nil
}

// topDescriptor describes what the archive's index.json points to.
func topDescriptor(idx v1.ImageIndex) (v1.Descriptor, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Descriptor{}, err
	}
	if len(im.Manifests) == 1 {
		return *im.Manifests[0].DeepCopy(), nil
	}
	d, err := partial.Descriptor(idx)
	if err != nil {
		return v1.Descriptor{}, err
	}
	return *d, nil
}

// WriteArchive writes idx to w as an OCI image layout in one tar file,
// named name (such as "ghcr.io/bpfstatd/bpfstatd:latest") in index.json's
// annotations. Entries are sorted and dated epoch, so equal images give
// equal archives.
func WriteArchive(w io.Writer, idx v1.ImageIndex, name string, epoch time.Time) error {
	if epoch.IsZero() {
		epoch = time.Unix(0, 0)
	}
	blobs, err := collectBlobs(idx)
	if err != nil {
		return err
	}
	top, err := topDescriptor(idx)
	if err != nil {
		return err
	}
	top.Annotations = map[string]string{
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": tagOf(name),
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests:     []v1.Descriptor{top},
	})
	if err != nil {
		return err
	}
	entries := []entry{
		{"blobs/", 0o755, nil},
		{"blobs/sha256/", 0o755, nil},
		{"index.json", 0o644, index},
		{"oci-layout", 0o644, []byte(`{"imageLayoutVersion":"1.0.0"}`)},
	}
	for _, h := range slices.Sorted(maps.Keys(blobs)) {
		entries = append(entries, entry{"blobs/sha256/" + h, 0o644, blobs[h]})
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	return writeTar(w, entries, epoch.UTC())
}

// tagOf is the tag of an image name, or "latest".
func tagOf(name string) string {
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[i+1:]
	}
	return "latest"
}

// collectBlobs returns every blob of idx by its sha256 hex digest: the
// index itself when it holds more than one image, and each image's
// manifest, configuration and layers.
func collectBlobs(idx v1.ImageIndex) (map[string][]byte, error) {
	blobs := map[string][]byte{}
	add := func(b []byte, h v1.Hash) error {
		if h.Algorithm != "sha256" {
			return fmt.Errorf("blob %s: only sha256 digests are written", h)
		}
		blobs[h.Hex] = b
		return nil
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) > 1 {
		raw, err := idx.RawManifest()
		if err != nil {
			return nil, err
		}
		h, err := idx.Digest()
		if err != nil {
			return nil, err
		}
		if err := add(raw, h); err != nil {
			return nil, err
		}
	}
	for _, d := range im.Manifests {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, err
		}
		raw, err := img.RawManifest()
		if err != nil {
			return nil, err
		}
		if err := add(raw, d.Digest); err != nil {
			return nil, err
		}
		cfg, err := img.RawConfigFile()
		if err != nil {
			return nil, err
		}
		name, err := img.ConfigName()
		if err != nil {
			return nil, err
		}
		if err := add(cfg, name); err != nil {
			return nil, err
		}
		layers, err := img.Layers()
		if err != nil {
			return nil, err
		}
		for _, l := range layers {
			b, err := readCompressed(l)
			if err != nil {
				return nil, err
			}
			h, err := l.Digest()
			if err != nil {
				return nil, err
			}
			if err := add(b, h); err != nil {
				return nil, err
			}
		}
	}
	return blobs, nil
}

func readCompressed(l v1.Layer) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// Open extracts the archive at path into dir, which must exist, and
// returns the image for platform (such as "linux/amd64") that it holds.
func Open(path, dir, platform string) (v1.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := untar(f, dir); err != nil {
		return nil, fmt.Errorf("extract %s: %w", path, err)
	}
	want, err := v1.ParsePlatform(platform)
	if err != nil {
		return nil, err
	}
	root, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("open image layout from %s: %w", path, err)
	}
	im, err := root.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(im.Manifests) != 1 {
		return nil, fmt.Errorf("%s: index.json names %d manifests, want 1", path, len(im.Manifests))
	}
	top := im.Manifests[0]
	switch {
	case top.MediaType.IsImage():
		img, err := root.Image(top.Digest)
		if err != nil {
			return nil, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		if cf.OS != want.OS || cf.Architecture != want.Architecture {
			return nil, fmt.Errorf("%s holds an image for %s/%s, not %s", path, cf.OS, cf.Architecture, platform)
		}
		return img, nil
	case top.MediaType.IsIndex():
		idx, err := root.ImageIndex(top.Digest)
		if err != nil {
			return nil, err
		}
		nested, err := idx.IndexManifest()
		if err != nil {
			return nil, err
		}
		for _, d := range nested.Manifests {
			if d.Platform != nil && d.Platform.Satisfies(*want) {
				return idx.Image(d.Digest)
			}
		}
		return nil, fmt.Errorf("%s holds no image for %s", path, platform)
	}
	return nil, fmt.Errorf("%s: index.json names a %s", path, top.MediaType)
}

// Unpack writes img's file system into root, as a container runtime
// would before starting it.
func Unpack(img v1.Image, root string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	return untar(rc, root)
}

// untar extracts directories and regular files from r into dir, refusing
// any other kind of entry and any name that leaves dir.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(hdr.Name)
		if !filepath.IsLocal(name) {
			return fmt.Errorf("entry %q leaves the directory", hdr.Name)
		}
		path := filepath.Join(dir, name)
		mode := os.FileMode(hdr.Mode).Perm()
		if hdr.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(path, mode); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: type %q is not a file or directory", hdr.Name, hdr.Typeflag)
		}
	}
}
