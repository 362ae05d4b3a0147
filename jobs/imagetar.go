package jobs

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/ipfs/go-cid"
)

// An image tarball from ipfs:// is the requester's, so the daemon reads
// its manifest itself and hands the engine a tarball of its own making:
// one image, its config and layers copied as plain files, and a manifest
// whose only tag is ipfsImageTag(CID). Nothing else in the tarball
// (RepoTags, repositories, index.json annotations, LayerSources URLs,
// other blobs) reaches the engine, so loading it cannot move another
// image's tag, and two tarballs that claim the same tag do not collide.

// ipfsImageRepo is the repository the daemon loads ipfs:// images under.
const ipfsImageRepo = "aixblock-ipfs"

// DefaultMaxImageMiB bounds an ipfs:// image tarball when Config leaves
// MaxImageMiB zero.
const DefaultMaxImageMiB = 20 << 10

const (
	maxManifestBytes = 1 << 20
	maxConfigBytes   = 8 << 20
	maxTarEntries    = 1 << 16
	maxImageLayers   = 512
)

// errImageTar marks a tarball that is refused; it is wrapped with why.
var errImageTar = errors.New("image tarball refused")

func imageTarErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errImageTar, fmt.Sprintf(format, a...))
}

// ipfsImageTag is the one tag an ipfs:// image gets: the CID, as CIDv1 in
// lower-case base32, so a CIDv0 and its CIDv1 share it.
func ipfsImageTag(c cid.Cid) string {
	return ipfsImageRepo + "/" + cid.NewCidV1(c.Type(), c.Hash()).String() + ":latest"
}

// imageArchive is what the daemon takes from a docker-save tarball.
type imageArchive struct {
	Config string   // entry of the image config
	Layers []string // entries of the layers, in order, symlinks resolved
}

type tarEntry struct {
	typ        byte
	size       int64
	link       string // symlink or hard link target, as an entry name
	sum        [32]byte
	compressed bool // gzip or zstd: the engine checks its diff ID after decompressing
}

// cleanEntry normalises a tar entry or manifest path; "" means refused
// (absolute, or climbing out with ..).
func cleanEntry(name string) string {
	name = strings.TrimPrefix(name, "./")
	if name == "" || strings.HasPrefix(name, "/") {
		return ""
	}
	c := path.Clean(name)
	if c == "." || c == ".." || strings.HasPrefix(c, "../") {
		return ""
	}
	return c
}

// readImageArchive checks a docker-save tarball of size bytes that open
// reads (twice at most): exactly one image in manifest.json, its config
// and every layer present as a file (a symlink to one is followed inside
// the tarball), as many layers as the config's rootfs lists, and each
// uncompressed layer's digest equal to its diff ID. Sparse entries are
// refused: they read back larger than the tarball, as zeros.
func readImageArchive(open func() (io.ReadCloser, error), size int64) (*imageArchive, error) {
	entries, manifest, err := scanImageTar(open, size)
	if err != nil {
		return nil, err
	}
	m, err := parseImageManifest(manifest)
	if err != nil {
		return nil, err
	}
	a, sums, err := m.resolve(entries)
	if err != nil {
		return nil, err
	}
	diffIDs, err := readImageConfig(open, a)
	if err != nil {
		return nil, err
	}
	if len(diffIDs) != len(a.Layers) {
		return nil, imageTarErr("the config lists %d layers, manifest.json %d", len(diffIDs), len(a.Layers))
	}
	for i, e := range sums {
		if e.compressed {
			continue
		}
		if want, got := diffIDs[i], "sha256:"+hex.EncodeToString(e.sum[:]); want != got {
			return nil, imageTarErr("layer %d (%.100q) does not match its diff ID: config says %.80q, the layer is %s", i, a.Layers[i], want, got)
		}
	}
	return a, nil
}

// scanImageTar reads the whole tarball once: every entry by its cleaned
// name, the regular files' digests, and manifest.json's bytes.
func scanImageTar(open func() (io.ReadCloser, error), size int64) (map[string]*tarEntry, []byte, error) {
	r, err := open()
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	entries := map[string]*tarEntry{}
	var manifest []byte
	tr := tar.NewReader(r)
	var total int64
	for n := 0; ; n++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, imageTarErr("reading the tar: %v", err)
		}
		if n >= maxTarEntries {
			return nil, nil, imageTarErr("more than %d entries", maxTarEntries)
		}
		name, e, err := newTarEntry(h, entries)
		if err != nil {
			return nil, nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if total += h.Size; h.Size < 0 || total > size {
				return nil, nil, imageTarErr("entry %.100q: its files add up to more than the tarball's %d bytes", name, size)
			}
		}
		if h.Typeflag == tar.TypeReg && name == "manifest.json" {
			if manifest, err = readManifestEntry(tr, h.Size); err != nil {
				return nil, nil, err
			}
			continue
		}
		if err := e.read(tr, h, name); err != nil {
			return nil, nil, err
		}
	}
	if manifest == nil {
		return nil, nil, imageTarErr("no manifest.json (make it with docker save NAME:TAG)")
	}
	return entries, manifest, nil
}

// newTarEntry records h in entries under its cleaned name, refusing names
// outside the tarball, twice the same name, and sparse entries.
func newTarEntry(h *tar.Header, entries map[string]*tarEntry) (string, *tarEntry, error) {
	name := cleanEntry(h.Name)
	if name == "" {
		return "", nil, imageTarErr("entry %.100q is outside the tarball", h.Name)
	}
	if entries[name] != nil {
		return "", nil, imageTarErr("entry %.100q appears twice", name)
	}
	e := &tarEntry{typ: h.Typeflag, size: h.Size}
	entries[name] = e
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return "", nil, imageTarErr("entry %.100q is sparse; give a plain docker save tarball", name)
		}
	}
	return name, e, nil
}

func readManifestEntry(tr *tar.Reader, size int64) ([]byte, error) {
	if size > maxManifestBytes {
		return nil, imageTarErr("manifest.json is %d bytes, limit %d", size, maxManifestBytes)
	}
	b, err := io.ReadAll(tr)
	if err != nil {
		return nil, imageTarErr("manifest.json: %v", err)
	}
	return b, nil
}

// read takes what e needs from entry name, whose header is h: a regular
// file's digest and whether it is compressed, a link's target.
func (e *tarEntry) read(tr *tar.Reader, h *tar.Header, name string) error {
	switch h.Typeflag {
	case tar.TypeReg:
		hs := sha256.New()
		var head [4]byte
		k, _ := io.ReadFull(tr, head[:])
		hs.Write(head[:k])
		if _, err := io.Copy(hs, tr); err != nil {
			return imageTarErr("entry %.100q: %v", name, err)
		}
		hs.Sum(e.sum[:0])
		e.compressed = bytes.HasPrefix(head[:k], []byte{0x1f, 0x8b}) || bytes.HasPrefix(head[:k], []byte{0x28, 0xb5, 0x2f, 0xfd})
	case tar.TypeSymlink:
		if !strings.HasPrefix(h.Linkname, "/") {
			e.link = cleanEntry(path.Join(path.Dir(name), h.Linkname))
		}
	case tar.TypeLink:
		e.link = cleanEntry(h.Linkname)
	}
	return nil
}

// imageManifest is the one image of a tarball's manifest.json.
type imageManifest struct {
	Config       string
	RepoTags     []string
	Layers       []string
	LayerSources map[string]json.RawMessage
}

func parseImageManifest(manifest []byte) (*imageManifest, error) {
	var man []imageManifest
	if err := json.Unmarshal(manifest, &man); err != nil {
		return nil, imageTarErr("manifest.json: %v", err)
	}
	if len(man) != 1 {
		return nil, imageTarErr("manifest.json lists %d images; give one image per tarball", len(man))
	}
	m := &man[0]
	if len(m.LayerSources) > 0 {
		return nil, imageTarErr("manifest.json has LayerSources (foreign layers the engine would download); give every layer in the tarball")
	}
	if len(m.Layers) > maxImageLayers {
		return nil, imageTarErr("%d layers, limit %d", len(m.Layers), maxImageLayers)
	}
	return m, nil
}

// resolve finds the manifest's config and layers among the tarball's
// entries, following links; it gives the layers' entries too, in order.
func (m *imageManifest) resolve(entries map[string]*tarEntry) (*imageArchive, []*tarEntry, error) {
	cfgName, cfgEntry, err := resolveEntry(entries, "config", m.Config)
	if err != nil {
		return nil, nil, err
	}
	if cfgEntry.size > maxConfigBytes {
		return nil, nil, imageTarErr("config %.100q is %d bytes, limit %d", m.Config, cfgEntry.size, maxConfigBytes)
	}
	a := &imageArchive{Config: cfgName}
	var sums []*tarEntry
	for i, l := range m.Layers {
		n, e, err := resolveEntry(entries, fmt.Sprintf("layer %d", i), l)
		if err != nil {
			return nil, nil, err
		}
		a.Layers = append(a.Layers, n)
		sums = append(sums, e)
	}
	return a, sums, nil
}

// resolveEntry follows name (what the manifest calls it, for errors)
// through at most 8 links to a regular file.
func resolveEntry(entries map[string]*tarEntry, what, name string) (string, *tarEntry, error) {
	n := cleanEntry(name)
	if n == "" {
		return "", nil, imageTarErr("%s %.100q is outside the tarball", what, name)
	}
	for hops := 0; ; hops++ {
		e := entries[n]
		switch {
		case e == nil:
			return "", nil, imageTarErr("%s %.100q is missing from the tarball", what, name)
		case e.typ == tar.TypeReg:
			return n, e, nil
		case (e.typ == tar.TypeSymlink || e.typ == tar.TypeLink) && e.link != "" && hops < 8:
			n = e.link
		default:
			return "", nil, imageTarErr("%s %.100q is not a file in the tarball", what, name)
		}
	}
}

// readImageConfig reads a's config (the tarball's second reading) and
// gives its layers' diff IDs; it refuses an image for another OS.
func readImageConfig(open func() (io.ReadCloser, error), a *imageArchive) ([]string, error) {
	cfg, err := readEntry(open, a.Config, maxConfigBytes)
	if err != nil {
		return nil, err
	}
	var conf struct {
		OS     string `json:"os"`
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfg, &conf); err != nil {
		return nil, imageTarErr("config %.100q: %v", a.Config, err)
	}
	if conf.OS != "" && conf.OS != "linux" {
		return nil, imageTarErr("config: os %.32q; this node runs linux images", conf.OS)
	}
	return conf.RootFS.DiffIDs, nil
}

// readEntry reads one regular entry of at most limit bytes.
func readEntry(open func() (io.ReadCloser, error), name string, limit int64) ([]byte, error) {
	r, err := open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err != nil {
			return nil, imageTarErr("entry %.100q: %v", name, err)
		}
		if h.Typeflag == tar.TypeReg && cleanEntry(h.Name) == name {
			b, err := io.ReadAll(io.LimitReader(tr, limit+1))
			if err == nil && int64(len(b)) > limit {
				err = fmt.Errorf("over %d bytes", limit)
			}
			if err != nil {
				return nil, imageTarErr("entry %.100q: %v", name, err)
			}
			return b, nil
		}
	}
}

// writeImageArchive copies the config and layers of a from the tarball r
// into w as plain files and adds a manifest whose one tag is tag.
func writeImageArchive(w io.Writer, r io.Reader, a *imageArchive, tag string) error {
	want := map[string]bool{a.Config: true}
	for _, l := range a.Layers {
		want[l] = true
	}
	tr, tw := tar.NewReader(r), tar.NewWriter(w)
	now := time.Unix(0, 0)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("image tarball: %w", err)
		}
		name := cleanEntry(h.Name)
		if h.Typeflag != tar.TypeReg || !want[name] {
			continue
		}
		delete(want, name)
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: h.Size, Typeflag: tar.TypeReg, ModTime: now}); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("image tarball %s: %w", name, err)
		}
	}
	if len(want) > 0 {
		return imageTarErr("the tarball changed while it was loaded")
	}
	man, err := json.Marshal([]map[string]any{{"Config": a.Config, "RepoTags": []string{tag}, "Layers": a.Layers}})
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "manifest.json", Mode: 0o644, Size: int64(len(man)), Typeflag: tar.TypeReg, ModTime: now}); err != nil {
		return err
	}
	if _, err := tw.Write(man); err != nil {
		return err
	}
	return tw.Close()
}
