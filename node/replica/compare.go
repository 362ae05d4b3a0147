package replica

import "time"

// Comparison is one run of a spec's comparator on two results.
type Comparison struct {
	A          string `json:"a"` // result CIDs
	B          string `json:"b"`
	Equivalent bool   `json:"equivalent"`
	// Error is why the comparator could not say; the results then count
	// as different.
	Error string `json:"error,omitempty"`
	// WallMs is what the comparison cost: fetching both results and
	// running the comparator's container, by this node's clock.
	WallMs int64 `json:"wall_ms"`
}

// classes merges the keys of results the comparator finds equivalent,
// so that the majority is counted over equivalence classes: each key
// joins the class of the first earlier key it is equivalent to and takes
// that class's key. Each pair of results is compared once.
func (c *Checker) classes(g *Group) {
	var order []string
	cidOf := map[string]string{} // a key's result, to compare by
	for _, r := range g.Replicas {
		if r.completed() {
			if _, ok := cidOf[r.Key]; !ok {
				cidOf[r.Key] = r.ResultCID
				order = append(order, r.Key)
			}
		}
	}
	classOf := map[string]string{}
	var heads []string
	for _, k := range order {
		classOf[k] = k
		for _, h := range heads {
			if c.equivalent(g, cidOf[h], cidOf[k]) {
				classOf[k] = h
				break
			}
		}
		if classOf[k] == k {
			heads = append(heads, k)
		}
	}
	for i := range g.Replicas {
		if g.Replicas[i].completed() {
			g.Replicas[i].Key = classOf[g.Replicas[i].Key]
		}
	}
}

// equivalent runs the comparator on results a and b, once per pair.
func (c *Checker) equivalent(g *Group, a, b string) bool {
	for _, cmp := range g.Comparisons {
		if cmp.A == a && cmp.B == b || cmp.A == b && cmp.B == a {
			return cmp.Equivalent
		}
	}
	start := time.Now()
	eq, err := c.cfg.Compare(c.ctx, g.Spec.Verify.Comparator, a, b)
	cmp := Comparison{A: a, B: b, Equivalent: eq && err == nil, WallMs: time.Since(start).Milliseconds()}
	if err != nil {
		cmp.Error = err.Error()
		c.log.Warn("comparator could not compare two results; they count as different", "job_id", g.ID, "err", err)
	}
	c.log.Info("comparator ran", "job_id", g.ID, "a", a, "b", b, "equivalent", cmp.Equivalent, "wall_ms", cmp.WallMs)
	g.Comparisons = append(g.Comparisons, cmp)
	return cmp.Equivalent
}
