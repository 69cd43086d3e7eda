package runner

import (
	"slices"
	"strings"
	"sync"
)

// partCache keeps the task parts that do not change from round to round (a
// session's setup) by digest, so the server sends each only once. It holds
// at most partCacheEntries parts and partCacheBytes in all, dropping the
// least recently used first.
type partCache struct {
	mu      sync.Mutex
	entries map[string][]byte
	order   []string // least recently used first
	bytes   int
}

const (
	partCacheEntries = 16
	partCacheBytes   = 64 << 20
	// partCacheMax is the largest part worth keeping: a model's parameters
	// change every round, and large ones would only push the setups out.
	partCacheMax = 1 << 20
)

// get returns the part whose digest is digest or starts with it (as a task
// names it); a prefix that matches two parts matches none.
func (c *partCache) get(digest string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	full := ""
	for d := range c.entries {
		if strings.HasPrefix(d, digest) {
			if full != "" {
				return nil, false
			}
			full = d
		}
	}
	if full == "" {
		return nil, false
	}
	c.touch(full)
	return c.entries[full], true
}

func (c *partCache) put(digest string, b []byte) {
	if digest == "" || len(b) > partCacheMax {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string][]byte{}
	}
	if _, ok := c.entries[digest]; ok {
		c.touch(digest)
		return
	}
	c.entries[digest] = b
	c.order = append(c.order, digest)
	c.bytes += len(b)
	for len(c.order) > partCacheEntries || c.bytes > partCacheBytes {
		c.bytes -= len(c.entries[c.order[0]])
		delete(c.entries, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *partCache) touch(digest string) {
	i := slices.Index(c.order, digest)
	c.order = append(append(c.order[:i:i], c.order[i+1:]...), digest)
}

// digests lists what the cache holds for the X-Silo-Have header, most
// recently used first: the first haveDigest characters of the haveEntries
// most recent digests. A task needs the parts used last (a session's setup
// and its latest model), and the header rides on every request.
func (c *partCache) digests() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, min(len(c.order), haveEntries))
	for i := len(c.order) - 1; i >= 0 && len(out) < haveEntries; i-- {
		out = append(out, c.order[i][:min(len(c.order[i]), haveDigest)])
	}
	return out
}

// What a runner lists of its parts: 10 hex digits (40 bits) of each of the
// 4 most recently used — a session's setup and its latest model, for two
// sessions at once. A prefix that matches a part the runner does not hold
// costs a fetch of that part; a part it holds but did not list is sent
// again.
const (
	haveDigest  = 10
	haveEntries = 4
)
