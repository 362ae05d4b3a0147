package jobs

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// cachedImage is an image this node pulled or loaded for a job (images an
// operator put in the engine are never evicted).
type cachedImage struct {
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
func (m *Manager) noteImage(ctx context.Context, image string, fetched bool) {
	m.imgMu.Lock()
	defer m.imgMu.Unlock()
	imgs := m.loadImages()
	c, known := imgs[image]
	if !known && !fetched {
		return
	}
	if size, err := m.cfg.Runtime.ImageSize(ctx, image); err == nil {
		c.Size = size
	}
	c.LastUsed = time.Now().UTC()
	imgs[image] = c
	m.saveImages(imgs)
}

func (m *Manager) saveImages(imgs map[string]cachedImage) {
	b, _ := json.MarshalIndent(imgs, "", "  ")
	tmp := m.imagesPath() + ".tmp"
	if os.WriteFile(tmp, b, 0o600) == nil {
		os.Rename(tmp, m.imagesPath())
	}
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
			inUse[j.Spec.Image] = true
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
