package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// source is the bpfstatd checkout to build: BPFSTATD_SOURCE, or the one
// this module sits in.
func source(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	if s := os.Getenv("BPFSTATD_SOURCE"); s != "" {
		return s
	}
	abs, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// copySource copies the bpfstatd module, without .git, bin and deploy, to
// a new directory.
func copySource(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "elsewhere", "bpfstatd")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() && (rel == ".git" || rel == "bin" || rel == "deploy") {
			return filepath.SkipDir
		}
		if !d.Type().IsRegular() && !d.IsDir() {
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func runImage(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr); err != nil {
		t.Fatalf("bpfstatd-image %v: %v\n%s", args, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// TestReproducible runs what `make image` runs twice, the second time
// from a copy of the source in another directory: the digests and the
// archives' bytes are the same. A third run with another
// SOURCE_DATE_EPOCH differs only by that.
func TestReproducible(t *testing.T) {
	src := source(t)
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a.tar"), filepath.Join(dir, "b.tar"), filepath.Join(dir, "c.tar")
	outA := runImage(t, nil, "-src", src, "-o", a)
	outB := runImage(t, nil, "-src", copySource(t, src), "-o", b)
	digestA, digestB := outA[strings.LastIndexByte(outA, '@')+1:], outB[strings.LastIndexByte(outB, '@')+1:]
	if !strings.HasPrefix(digestA, "sha256:") || digestA != digestB {
		t.Fatalf("two builds: %q and %q, want one sha256 digest", outA, outB)
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if len(ba) == 0 || !bytes.Equal(ba, bb) {
		t.Errorf("archives differ: %d and %d bytes", len(ba), len(bb))
	}
	t.Logf("image digest %s, twice", digestA)

	outC := runImage(t, map[string]string{"SOURCE_DATE_EPOCH": "1700000000"}, "-src", src, "-o", c)
	if strings.HasSuffix(outC, digestA) {
		t.Errorf("SOURCE_DATE_EPOCH changed nothing: %s", outC)
	}
}

// TestBadEpoch refuses a SOURCE_DATE_EPOCH that is not a number.
func TestBadEpoch(t *testing.T) {
	err := run(context.Background(), []string{"-o", filepath.Join(t.TempDir(), "x.tar")},
		func(string) string { return "yesterday" }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("err = %v, want one naming SOURCE_DATE_EPOCH", err)
	}
}
