package jobs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/aixblock/aixblock/internal/atomicfile"
	"github.com/ipfs/go-cid"
)

// cachedImage is an image this node pulled or loaded for a job (images an
// operator put in the engine are never evicted).
type cachedImage struct {
	// ID is what the name pointed at when the manager fetched it; an
	// ipfs:// image is reused only while its tag still names that ID.
	ID       string    `json:"id,omitempty"`
	Size     int64     `json:"size"`
	LastUsed time.Time `json:"last_used"`
}

func (m *Manager) imagesPath() string { return filepath.Join(m.cfg.Dir, "images.json") }

func (m *Manager) loadImages() map[string]cachedImage {
	out := map[string]cachedImage{}
	if b, err := os.ReadFile(m.imagesPath()); err == nil {
		json.Unmarshal(b, &out)
	}
	return out
}

// noteImage records that the manager brought image into the engine, or
// used one it brought earlier.
func (m *Manager) noteImage(ctx context.Context, image, id string, fetched bool) {
	m.imgMu.Lock()
	defer m.imgMu.Unlock()
	imgs := m.loadImages()
	c, known := imgs[image]
	if !known && !fetched {
		return
	}
	c.ID = id
	if size, err := m.cfg.Runtime.ImageSize(ctx, image); err == nil {
		c.Size = size
	}
	c.LastUsed = time.Now().UTC()
	imgs[image] = c
	m.saveImages(imgs)
}

func (m *Manager) saveImages(imgs map[string]cachedImage) {
	b, err := json.MarshalIndent(imgs, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(m.imagesPath(), b, 0o600)
	}
	if err != nil {
		// A cache: the next use of an image writes it again.
		m.log.Warn("save the image cache", "err", err)
	}
}

// loadedImage is the ID of the ipfs:// image this manager loaded as tag,
// if the engine still has it under that tag.
func (m *Manager) loadedImage(ctx context.Context, tag string) string {
	m.imgMu.Lock()
	c, ok := m.loadImages()[tag]
	m.imgMu.Unlock()
	if !ok || c.ID == "" {
		return ""
	}
	if id, err := m.cfg.Runtime.ImageID(ctx, tag); err == nil && id == c.ID {
		return id
	}
	return ""
}

// cacheName is the name under which the cache knows a spec's image.
func cacheName(image string) string {
	if c, ok := strings.CutPrefix(image, "ipfs://"); ok {
		if root, err := cid.Decode(c); err == nil {
			return ipfsImageTag(root)
		}
	}
	return image
}

// evictImages removes the least recently used images the manager fetched
// until they fit in ImageCacheMiB, sparing those of unfinished jobs.
func (m *Manager) evictImages(ctx context.Context) {
	m.imgMu.Lock()
	defer m.imgMu.Unlock()
	imgs := m.loadImages()
	var total int64
	names := make([]string, 0, len(imgs))
	for n, c := range imgs {
		total += c.Size
		names = append(names, n)
	}
	limit := m.cfg.ImageCacheMiB << 20
	if total <= limit {
		return
	}
	inUse := map[string]bool{}
	for _, j := range m.List() {
		if !j.State.Terminal() {
			inUse[cacheName(j.Spec.Image)] = true
		}
	}
	sort.Slice(names, func(a, b int) bool { return imgs[names[a]].LastUsed.Before(imgs[names[b]].LastUsed) })
	for _, n := range names {
		if total <= limit {
			break
		}
		if inUse[n] {
			continue
		}
		if err := m.cfg.Runtime.RemoveImage(ctx, n); err != nil {
			m.log.Warn("evict image", "image", n, "err", err)
			continue
		}
		m.log.Info("evicted image from the cache", "image", n, "size_mib", imgs[n].Size>>20)
		total -= imgs[n].Size
		delete(imgs, n)
	}
	m.saveImages(imgs)
}
