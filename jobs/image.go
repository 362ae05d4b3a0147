package jobs

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/moby/moby/client"
)

// ImportStaticBinary makes a FROM-scratch image named ref holding one
// static binary at /NAME as its entrypoint, plus empty /inputs, /outputs
// and /tmp. No registry is involved.
func (d *Docker) ImportStaticBinary(ctx context.Context, binary, ref string) error {
	b, err := os.ReadFile(binary)
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	name := filepath.Base(binary)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(b))})
	tw.Write(b)
	for _, dir := range []string{"inputs/", "outputs/", "tmp/", "mnt/"} {
		tw.WriteHeader(&tar.Header{Name: dir, Mode: 0o755, Typeflag: tar.TypeDir})
	}
	if err := tw.Close(); err != nil {
		return err
	}
	res, err := d.c.ImageImport(ctx, client.ImageImportSource{Source: &buf, SourceName: "-"}, ref,
		client.ImageImportOptions{Changes: []string{fmt.Sprintf(`ENTRYPOINT ["/%s"]`, name)}})
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	defer res.Close()
	_, err = io.Copy(io.Discard, res)
	return err
}
