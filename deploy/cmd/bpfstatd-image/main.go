// Command bpfstatd-image builds bpfstatd's container image without a
// container engine and writes it as an OCI image layout in one tar file.
// The same source and Go toolchain give the same digest: timestamps come
// from SOURCE_DATE_EPOCH (default 0).
//
//	go -C deploy run ./cmd/bpfstatd-image -src .. -o ../bin/bpfstatd-image.tar
//
// It prints the archive's path and the digest a registry will report
// after a push.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bpfstatd/bpfstatd/deploy/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bpfstatd-image: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bpfstatd-image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	src := fs.String("src", "..", "directory of the bpfstatd module")
	out := fs.String("o", "../bin/bpfstatd-image.tar", "OCI archive to write")
	name := fs.String("name", "ghcr.io/bpfstatd/bpfstatd:latest", "image name recorded in the archive")
	platforms := fs.String("platform", image.DefaultPlatform(), "comma-separated platforms to build, such as linux/amd64,linux/arm64")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	epoch := time.Unix(0, 0)
	if s := getenv("SOURCE_DATE_EPOCH"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("invalid SOURCE_DATE_EPOCH %q: want seconds since 1970", s)
		}
		epoch = time.Unix(n, 0)
	}
	idx, err := image.Build(ctx, image.Options{
		Source:    *src,
		Platforms: strings.Split(*platforms, ","),
		Epoch:     epoch,
		Log:       stderr,
	})
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := image.WriteArchive(&buf, idx, *name, epoch); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	digest, err := image.Digest(idx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s %s@%s\n", *out, *name, digest)
	return nil
}
